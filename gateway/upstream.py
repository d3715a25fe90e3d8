"""The llama-server client: one pooled aiohttp session per event loop; nothing else talks to backends."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


class UpstreamError(Exception):
    """A backend failed. `retryable` failures say the backend is unwell (it refused or dropped the connection, or
    answered 5xx), not that the request is bad (4xx) or too slow (a timeout): another backend may serve the request,
    as long as nothing of this one's answer has reached the client."""

    def __init__(
        self, message: str, status: int = 0, body: dict | None = None, retryable: bool = False, refused: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}
        self.retryable = retryable
        self.refused = refused  # the connection itself was refused: nothing listens there (any more)
        self.midway = False  # the backend had begun its answer (gateway.relay.whole): it failed, it was not missing

    @property
    def is_timeout(self) -> bool:
        return self.status == 504


@dataclass(frozen=True)
class Target:
    base_url: str
    api_key: str = ""

    def headers(self) -> dict[str, str]:
        # Only what llama-server needs (the body's content type is the body's): client headers (X-Conversation-Id
        # above all) are never forwarded.
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(frozen=True)
class Upload:
    """A file sent in a multipart form."""

    filename: str
    data: bytes
    content_type: str


def session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    current = _sessions.get(loop)
    if current is None or current.closed:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        current = aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=["User-Agent"])
        _sessions[loop] = current
    return current


async def close_sessions() -> None:
    """Close this loop's pool (tests, whose event loops come and go, call it)."""
    current = _sessions.pop(asyncio.get_running_loop(), None)
    if current is not None:
        await current.close()


@atexit.register
def _close_sessions_at_exit() -> None:
    # The ASGI server has stopped its loop by now; close the pools on it so nothing reports unclosed sockets.
    for loop, current in list(_sessions.items()):
        if not current.closed and not loop.is_closed() and not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(current.close())


def _error_from(status: int, raw: bytes) -> UpstreamError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else raw[:500].decode(errors="replace")
    # A 5xx before any output means this backend is unwell: another one may serve the request.
    return UpstreamError(message or f"backend answered {status}", status, body, retryable=status >= 500)


def _refusal(target: Target, path: str, status: int, raw: bytes) -> UpstreamError:
    """A backend's error answer to a POST. One that does not serve the route is named, with the route, so that its
    operator knows which backend to upgrade or restart: 404 is a build older than the route, 501 one not started for
    it (no --rerank, a model without audio). Neither is retried: the backend is well, and serves its other routes."""
    error = _error_from(status, raw)
    if status not in (404, 501):
        return error
    why = str(error) if status == 501 else "it answers 404: a llama-server build older than this endpoint?"
    body = {"error": {"type": "not_supported_error", "code": "endpoint_not_supported"}}
    return UpstreamError(f"The backend {target.base_url} does not serve {path} ({why})", 501, body)


def event_error(event: dict) -> UpstreamError:
    """A stream's error event (`{"error": …}`) as the failure it reports; the event is kept as the body.

    llama-server's `code` is the status it would have answered before the stream: a 5xx is the backend failing,
    a 4xx (`exceed_context_size_error` …) is the answer to a bad request.
    """
    error = event["error"] if isinstance(event.get("error"), dict) else {}
    status = error.get("code") if isinstance(error.get("code"), int) else 500
    message = str(error.get("message") or "the backend failed during generation")
    return UpstreamError(message, status, event, retryable=status >= 500)


KEEPALIVE = b""  # in a stream's batch: the backend is silent, or sent a keep-alive of its own


def _timeout(seconds: float | None, connect: float = 5.0) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=seconds)


async def post_json(target: Target, path: str, payload: dict, timeout: float) -> dict:
    return await _post(target, path, timeout, payload)


async def post_form(
    target: Target, path: str, fields: dict[str, str], files: dict[str, Upload], timeout: float
) -> dict:
    """A multipart/form-data POST (an audio file and its fields), answered with JSON."""
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for name, upload in files.items():
        form.add_field(name, upload.data, filename=upload.filename, content_type=upload.content_type)
    return await _post(target, path, timeout, form)


async def _post(target: Target, path: str, timeout: float, body: dict | aiohttp.FormData) -> dict:
    """POST a JSON payload or a form; the JSON answer, or UpstreamError."""
    as_json = isinstance(body, dict)
    try:
        async with session().post(
            target.base_url + path, json=body if as_json else None, data=None if as_json else body,
            headers=target.headers(), timeout=_timeout(timeout),
        ) as response:  # fmt: skip
            raw = await response.read()
            if response.status >= 400:
                raise _refusal(target, path, response.status, raw)
            return json.loads(raw)
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamError(f"cannot reach backend: {exc}", 503, retryable=True, refused=True) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise UpstreamError(f"cannot reach backend: {exc}", 503, retryable=True) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamError(f"backend did not answer within {timeout:.0f} s", 504) from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise UpstreamError(f"backend failed: {exc}", 502) from exc


async def get(target: Target, path: str, timeout: float) -> tuple[int, bytes]:
    """A GET for probes: (status, body); raises UpstreamError when the backend cannot be reached."""
    try:
        async with session().get(
            target.base_url + path, headers=target.headers(), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(f"cannot reach backend: {exc.__class__.__name__} {exc}", 503) from exc


def answer_message(status: int, raw: bytes) -> str:
    """What a backend's error answer says (for probes): its `error.message`, else the start of its body."""
    return _error_from(status, raw).args[0]


async def stream(
    target: Target, path: str, payload: dict, timeout: float, keepalive: float
) -> AsyncIterator[list[bytes]]:
    """POST and yield the SSE payloads (after `data: `) as they arrive, those that arrived together in one list; an
    `event:` line (the Responses and Messages streams name their events) is yielded as it is, before its payload; a
    comment line (llama-server's own keep-alive), or `keepalive` seconds of silence, is KEEPALIVE.

    Errors before the first byte raise UpstreamError; a failure later ends the iteration with UpstreamError too
    (a dropped connection is retryable either way: see UpstreamError); `timeout` seconds of silence is a 504.
    Leaving the iteration early (the client went away) closes the connection, which is how llama-server learns to
    cancel the generation and free its slot.
    """
    try:
        async with session().post(
            target.base_url + path, json=payload, headers=target.headers(), timeout=_timeout(timeout)
        ) as response:
            if response.status >= 400:
                raise _refusal(target, path, response.status, await response.read())
            content, pending = response.content, b""
            while True:
                try:
                    async with asyncio.timeout(keepalive):
                        data = await content.readany()
                except aiohttp.ServerTimeoutError:
                    raise  # `timeout` seconds of silence: aiohttp's own read timeout
                except TimeoutError:
                    yield [KEEPALIVE]
                    continue
                if not data:
                    break
                # Whatever has arrived, split into lines here: aiohttp's line iterator costs a read call per line.
                *lines, pending = (pending + data).split(b"\n")
                batch = [
                    line[5:].strip() if line[:1] == b"d" else KEEPALIVE if line[:1] == b":" else line.rstrip()
                    for line in lines
                    if line[:5] == b"data:" or line[:1] == b":" or line[:6] == b"event:"
                ]
                if batch:
                    yield batch
            if pending.startswith(b"data:"):  # a last event without its line end
                yield [pending[5:].strip()]
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamError(f"cannot reach backend: {exc}", 503, retryable=True, refused=True) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamError(f"backend went silent for {timeout:.0f} s", 504) from exc
    except aiohttp.ClientError as exc:  # the connection dropped, or was reset: a killed backend, say
        raise UpstreamError(f"backend failed: {exc}", 502, retryable=True) from exc
