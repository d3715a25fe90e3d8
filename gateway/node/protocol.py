"""The supervisor's wire format: length-prefixed frames, a handshake in which each side proves it holds the
installation's SECRET_KEY, then frames sealed with AES-GCM under keys of that session alone.

    supervisor → {"op": "challenge", "nonce": ns, "node"}
    client     → {"op": "hello", "nonce": nc, "proof": mac("client", ns, nc)}
    supervisor → {"op": "proven", "proof": mac("server", ns, nc)}        (or {"op": "error", "message"} and close)
    … every later frame in either direction is sealed: AES-GCM, a key per direction, the frame's number as nonce

A process that took the supervisor's port while it was down cannot make the second proof, so a gateway tells it
nothing; a frame that is altered, replayed, reordered or taken from another session does not open. The messages:

    client     → {"op": "acquire", "id", "backend", "lease"}    ← {"op": "reply", "id", "ok", "port", "key", "waited_ms", "cold"}
    client     → {"op": "release", "lease"}                      (no reply: ends a lease, or leaves the queue)
    client     → {"op": "load" | "unload" | "restart", "id", "backend", "wait"}  ← {"op": "reply", "id", "ok", "model"}
    client     → {"op": "status", "id"}                          ← {"op": "reply", "id", "ok", "models", "budget"}
    client     → {"op": "ping"}  /  supervisor → {"op": "ping"}  (liveness: either side drops a silent peer)
    supervisor → {"op": "welcome", "node", "models", "budget"}   (first sealed frame)
    supervisor → {"op": "state", "model", "budget", "key"}       (pushed on every change)
    sampler    → {"op": "subscribe_energy"} / {"op": "admission", …}; supervisor → {"op": "in_flight" | "lease_ended", …}

A refusal is {"op": "reply", "id", "ok": false, "status", "code", "message", "retry_after"}.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

MAX_FRAME = 1024 * 1024  # bytes a message may have
HANDSHAKE_TIMEOUT = 2.0  # seconds each step of the handshake may take
PING_EVERY = 1.0  # seconds between pings from either side
CLIENT_SILENCE = 5.0  # a supervisor silent this long is gone (stopped, hung, or its host vanished)
SERVER_SILENCE = 20.0  # a gateway silent this long is gone: its leases are released
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    pass


def _installation_key() -> bytes:
    # Derived, so that nothing said here is worth anything wherever else SECRET_KEY is used.
    return hmac.new(settings.SECRET_KEY.encode(), b"jetson-gateway supervisor", hashlib.sha256).digest()


def _mac(*parts: str) -> str:
    return hmac.new(_installation_key(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


def proof(role: str, server_nonce: str, client_nonce: str) -> str:
    """What `role` ("client" or "server") shows to prove it holds the key, for this pair of nonces only."""
    return _mac(role, server_nonce, client_nonce)


def proof_matches(role: str, server_nonce: str, client_nonce: str, candidate: object) -> bool:
    return isinstance(candidate, str) and hmac.compare_digest(proof(role, server_nonce, client_nonce), candidate)


class Seal:
    """One direction of a session: frames numbered from 0, each sealed with its number as the AES-GCM nonce."""

    def __init__(self, direction: str, server_nonce: str, client_nonce: str) -> None:
        key = hmac.new(_installation_key(), f"{direction}|{server_nonce}|{client_nonce}".encode(), "sha256").digest()
        self.aead = AESGCM(key)
        self.number = 0

    def _nonce(self) -> bytes:
        nonce = self.number.to_bytes(12, "big")
        self.number += 1
        return nonce

    def close(self, message: dict[str, Any]) -> bytes:
        return self.aead.encrypt(self._nonce(), _json(message), None)

    def open(self, frame: bytes) -> dict[str, Any]:
        try:
            return _message(self.aead.decrypt(self._nonce(), frame, None))
        except InvalidTag:
            raise ProtocolError("a frame did not open: altered, replayed, or not of this session") from None


class Session:
    """Both directions of one connection, seen from one side."""

    def __init__(self, role: str, server_nonce: str, client_nonce: str) -> None:
        outgoing, incoming = ("s2c", "c2s") if role == "server" else ("c2s", "s2c")
        self.sending = Seal(outgoing, server_nonce, client_nonce)
        self.receiving = Seal(incoming, server_nonce, client_nonce)

    def frame(self, message: dict[str, Any]) -> bytes:
        return frame(self.sending.close(message))

    async def read(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        raw = await read_frame(reader)
        return None if raw is None else self.receiving.open(raw)


def _json(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _message(raw: bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"message longer than {MAX_FRAME} bytes")
    return _LENGTH.pack(len(payload)) + payload


def plain(message: dict[str, Any]) -> bytes:
    """A handshake frame (the only frames that are not sealed)."""
    return frame(_json(message))


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload, or None when the peer has closed the connection between frames."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the connection closed inside a frame") from None
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise ProtocolError(f"message longer than {MAX_FRAME} bytes")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("the connection closed inside a frame") from None


async def read_plain(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    raw = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT)
    return None if raw is None else _message(raw)


def refusal(status: int, code: str, message: str, retry_after: float | None = None) -> dict[str, Any]:
    return {"ok": False, "status": status, "code": code, "message": message, "retry_after": retry_after}
