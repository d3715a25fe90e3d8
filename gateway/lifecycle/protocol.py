"""The supervisor's wire format: newline-delimited JSON over TCP, opened by a challenge the client answers with an
HMAC of SECRET_KEY, so that only processes of this installation may command it when it listens beyond loopback.

    supervisor → {"op": "challenge", "nonce", "node"}
    client     → {"op": "hello", "token": hmac(nonce)}             ← {"op": "welcome", "node", "models", "budget"}
    client     → {"op": "acquire", "id", "backend", "lease"}       ← {"op": "reply", "id", "ok", "port", "waited_ms", "cold"}
    client     → {"op": "release", "lease"}                        (no reply: ends a lease in flight or leaves the queue)
    client     → {"op": "load" | "unload" | "restart", "id", "backend", "wait"}  ← {"op": "reply", "id", "ok", "model"}
    client     → {"op": "status", "id"}                            ← {"op": "reply", "id", "ok", "models", "budget"}
    supervisor → {"op": "state", "model", "budget"}                (pushed on every change)

A refusal is {"op": "reply", "id", "ok": false, "status", "code", "message", "retry_after"}.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

from django.conf import settings

MAX_LINE = 1024 * 1024  # bytes a message may have
HELLO_TIMEOUT = 5.0


class ProtocolError(Exception):
    pass


def _key() -> bytes:
    # Derived, so that the supervisor's token is worth nothing anywhere else SECRET_KEY is used.
    return hmac.new(settings.SECRET_KEY.encode(), b"jetson-gateway supervisor", hashlib.sha256).digest()


def token(nonce: str) -> str:
    return hmac.new(_key(), nonce.encode(), hashlib.sha256).hexdigest()


def token_matches(nonce: str, candidate: object) -> bool:
    return isinstance(candidate, str) and hmac.compare_digest(token(nonce), candidate)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None when the peer has closed the connection."""
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError) as exc:
        raise ProtocolError(f"message longer than {MAX_LINE} bytes") from exc
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message


def refusal(status: int, code: str, message: str, retry_after: float | None = None) -> dict[str, Any]:
    return {"ok": False, "status": status, "code": code, "message": message, "retry_after": retry_after}
