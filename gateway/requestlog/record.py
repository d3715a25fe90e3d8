"""One request's record: created when the request arrives, filled in on the way, submitted once when it ends."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.utils import timezone

from gateway import metrics
from gateway.errors import APIError
from gateway.requestlog import writer

Result = TypeVar("Result")
_in_progress = 0  # records started and not yet submitted, in this process


@dataclass
class RequestRecord:
    """What the gateway knows about one request, from its arrival to its log row.

    Its life is owned here: `start` when the request arrives, `identify` once the key is known, `serve` around the
    work (which submits the record however the request ends: answered, refused, cancelled, or its stream over).
    The service only fills in what it learns on the way (model, backend, tokens, first token).
    """

    endpoint: str
    method: str = "POST"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.perf_counter)
    api_key_id: int | None = None
    key_name: str = ""
    owner_id: int | None = None
    model_requested: str = ""
    model_used: str = ""
    backend: str = ""
    status: int = 0
    error_type: str = ""
    error_code: str = ""
    error_message: str = ""
    stream: bool = False
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cold_start_ms: float | None = None  # waited for a managed model to load (gateway.lifecycle)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None
    client_ip: str | None = None
    user_agent: str = ""
    client_gone: bool = False
    prompt_preview: str = ""
    completion_preview: str = ""
    store_previews: bool = False

    @classmethod
    def start(cls, endpoint: str, method: str, meta: Mapping[str, Any]) -> RequestRecord:
        """The record of a request that just arrived; `meta` is its META (or an equivalent dict)."""
        record = cls(endpoint=endpoint, method=method)
        record.client_ip = client_ip(meta)
        record.user_agent = str(meta.get("HTTP_USER_AGENT", ""))
        return record

    def identify(self, key: Any) -> None:
        """The request's API key is known: the row carries it, its owner, and the key's previews choice."""
        self.api_key_id, self.key_name, self.owner_id = key.pk, key.name, key.owner_id
        self.store_previews = previews_allowed(key)

    async def serve(self, work: Awaitable[Result]) -> Result:
        """Await the request's work and submit this record however it ends.

        An APIError is recorded and raised again for the caller to render; a cancelled request (the client went
        away) is recorded as 499; a stream is returned wrapped, so the record is submitted when the stream ends.
        """
        global _in_progress
        _in_progress += 1
        try:
            result = await work
        except APIError as exc:
            self.error_type, self.error_code, self.error_message = exc.type, exc.code or "", exc.message
            self._submit(exc.status)
            raise
        except asyncio.CancelledError:
            self.client_gone = True
            self._submit(499)
            raise
        except BaseException:
            self._submit(500)
            raise
        if isinstance(result, AsyncIterator):
            return self._streamed(result)  # type: ignore[return-value]
        self._submit(200)
        return result

    async def _streamed(self, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass a stream of chunks on; an error event makes the row a 502, a client gone a 499."""
        status = 200
        try:
            async for chunk in stream:
                if chunk and "error" in chunk:
                    error = chunk["error"]
                    self.error_type = str(error.get("type") or "server_error")
                    self.error_code = str(error.get("code") or "")
                    self.error_message = str(error.get("message") or "")
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            self.client_gone = True
            status = 499
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            self._submit(status if not self.error_type else 502)

    def _submit(self, status: int) -> None:
        global _in_progress
        self.finish(status)
        _in_progress -= 1
        metrics.observe(self)
        writer.submit(self)

    def finish(self, status: int) -> None:
        self.status = status
        self.latency_ms = (time.perf_counter() - self.started) * 1000

    def mark_first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000


def in_progress_count() -> int:
    """Requests of this process whose record is not submitted yet: for /health."""
    return _in_progress


def previews_allowed(key: Any) -> bool:
    """Whether requests made with `key` (an APIKey, or None) keep prompt/completion previews."""
    override = getattr(key, "store_previews", None)
    return bool(settings.LOG_PREVIEWS if override is None else override)


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[::1]:1234"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "1.2.3.4:1234"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_ip(meta: Mapping[str, Any]) -> str | None:
    """The client's address: REMOTE_ADDR, or X-Forwarded-For when (and only as far as) it came via trusted proxies."""
    remote = _parse_ip(str(meta.get("REMOTE_ADDR") or ""))
    if remote is None:
        return None
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    if not forwarded or not any(remote in net for net in trusted):
        return str(remote)
    # Walk from the nearest hop outwards; the first address not one of our proxies is the client.
    # Anything further left was written by the client itself and cannot be believed.
    hop = remote
    for part in reversed(forwarded.split(",")):
        address = _parse_ip(part)
        if address is None:
            break
        hop = address
        if not any(hop in net for net in trusted):
            break
    return str(hop)
