"""The gateway process's side of the supervisor: one persistent connection per supervisor (per event loop), so that
asking for a model costs one local round trip, and a mirror of the states it pushes.

`lease()` is what the request path uses: the model's URL for the time of one upstream call, given back however the
call ends (a client that leaves while the model loads leaves its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import errors
from gateway.lifecycle import protocol
from gateway.upstream import Target

if TYPE_CHECKING:
    from gateway.routing import BackendInfo

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
KEEP_EVERY = 2.0  # seconds between reconnection attempts for watchers
Listener = Callable[[dict[str, Any]], None]


class SupervisorUnavailable(ConnectionError):
    pass


class Refused(errors.APIError):
    """The supervisor could not give the model (or could not be asked): another backend may still serve it."""


def refused(reply: dict[str, Any]) -> Refused:
    """The supervisor's refusal as the client sees it: 429 or 503 (409 for a busy unload) with Retry-After."""
    status = int(reply.get("status") or 503)
    kinds = {
        429: "rate_limit_error",
        409: "invalid_request_error",
        404: "not_found_error",
        400: "invalid_request_error",
    }
    retry_after = reply.get("retry_after")
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else {}
    return Refused(
        status, str(reply.get("message") or "the model is unavailable"), kinds.get(status, "unavailable_error"),
        None, str(reply.get("code") or "model_unavailable"), headers,
    )  # fmt: skip


def unavailable(node: str, address: str, reason: object) -> Refused:
    return Refused(
        503, f"cannot reach the model supervisor of node {node} at {address}: {reason}", "unavailable_error",
        None, "supervisor_unavailable", {"Retry-After": "1"},
    )  # fmt: skip


class SupervisorConnection:
    """One connection to one supervisor; reconnects on the next call after it drops."""

    def __init__(self, address: str) -> None:
        self.address = address
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.node = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.connecting = asyncio.Lock()
        self.reading: asyncio.Task | None = None
        self.models: dict[int, dict[str, Any]] = {}  # the mirror: backend id → state, as last pushed
        self.budget: dict[str, Any] = {}
        self.listeners: set[Listener] = set()
        self.keeping: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self) -> None:
        async with self.connecting:
            if self.connected:
                return
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=protocol.MAX_LINE), CONNECT_TIMEOUT
            )
            try:
                challenge = await asyncio.wait_for(protocol.read(reader), CONNECT_TIMEOUT)
                if not challenge or challenge.get("op") != "challenge":
                    raise SupervisorUnavailable("it did not send its challenge")
                writer.write(protocol.encode({"op": "hello", "token": protocol.token(str(challenge.get("nonce")))}))
                welcome = await asyncio.wait_for(protocol.read(reader), CONNECT_TIMEOUT)
                if not welcome or welcome.get("op") != "welcome":
                    raise SupervisorUnavailable((welcome or {}).get("message") or "it closed the connection")
            except BaseException:
                writer.close()
                raise
            self.reader, self.writer, self.node = reader, writer, str(welcome.get("node", ""))
            self._mirror(welcome.get("models") or [], welcome.get("budget") or {})
            self.reading = asyncio.ensure_future(self._read(reader))
            self._notify({"op": "connected", "node": self.node})

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await protocol.read(reader)) is not None:
                if message.get("op") == "reply":
                    future = self.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("op") == "state":
                    self._mirror([message["model"]], message.get("budget") or {})
                else:
                    self._notify(message)  # what a subscriber asked to be told (the sampler: requests in flight)
        except (ConnectionError, protocol.ProtocolError) as exc:
            logger.warning("supervisor %s: %s", self.address, exc)
        finally:
            self._lost()

    def _lost(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(SupervisorUnavailable("the connection was lost"))
        self._notify({"op": "disconnected", "node": self.node})

    def _mirror(self, models: list[dict[str, Any]], budget: dict[str, Any]) -> None:
        for model in models:
            self.models[model["backend"]] = model
        if budget:
            self.budget = budget
        for model in models:
            self._notify({"op": "state", "model": model, "budget": self.budget})

    def _notify(self, message: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(message)
            except Exception:
                logger.exception("supervisor listener failed")

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request and wait for its reply (a cancelled wait leaves the reply unread)."""
        if not self.connected:
            await self.connect()
        message_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        assert self.writer is not None
        self.writer.write(protocol.encode({**message, "id": message_id}))
        try:
            return await future
        finally:
            self.pending.pop(message_id, None)

    def send(self, message: dict[str, Any]) -> None:
        """Fire and forget; on a dropped connection the supervisor has released everything already."""
        if self.connected:
            assert self.writer is not None
            self.writer.write(protocol.encode(message))

    def watch(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every state pushed (and the mirror at once); the connection is kept up, and
        re-established, for as long as someone watches. Returns the function that stops watching."""
        self.listeners.add(listener)
        if self.connected:
            for model in list(self.models.values()):
                listener({"op": "state", "model": model, "budget": self.budget})
        if self.keeping is None or self.keeping.done():
            self.keeping = asyncio.ensure_future(self._keep())
        return lambda: self.listeners.discard(listener)

    async def _keep(self) -> None:
        while self.listeners:
            if not self.connected:
                with contextlib.suppress(OSError, TimeoutError, protocol.ProtocolError):
                    await self.connect()
            await asyncio.sleep(KEEP_EVERY)

    async def close(self) -> None:
        if self.keeping is not None:
            self.keeping.cancel()
        if self.reading is not None:
            self.reading.cancel()
            with contextlib.suppress(BaseException):
                await self.reading
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_connections: dict[tuple[asyncio.AbstractEventLoop, str], SupervisorConnection] = {}
_leases = itertools.count(1)


def connection(address: str) -> SupervisorConnection:
    key = (asyncio.get_running_loop(), address)
    current = _connections.get(key)
    if current is None:
        current = _connections[key] = SupervisorConnection(address)
    return current


async def close_connections() -> None:
    """Close this loop's connections (tests, whose event loops come and go, call it)."""
    loop = asyncio.get_running_loop()
    for key in [key for key in _connections if key[0] is loop]:
        await _connections.pop(key).close()


@dataclass
class Grant:
    target: Target
    waited_ms: float
    cold: bool


@contextlib.asynccontextmanager
async def lease(backend: BackendInfo, request_id: str) -> AsyncIterator[Grant]:
    """A managed backend's URL for the time of the block; released when the block ends, however it ends."""
    node, address = backend.node, backend.supervisor
    if not address:
        raise Refused(
            503, f"no model supervisor has started on node {node}: run `manage.py supervise` there",
            "unavailable_error", None, "supervisor_unavailable", {"Retry-After": "5"},
        )  # fmt: skip
    conn = connection(address)
    name = f"{request_id}.{next(_leases)}"
    try:
        reply = await conn.call({"op": "acquire", "backend": backend.id, "lease": name})
    except asyncio.CancelledError:
        conn.send({"op": "release", "lease": name})  # the client left while waiting: leave the queue
        raise
    except (OSError, TimeoutError, protocol.ProtocolError) as exc:
        raise unavailable(node, address, exc) from exc
    if not reply.get("ok"):
        raise refused(reply)
    try:
        url = f"http://{_url_host(conn.host)}:{reply['port']}"
        yield Grant(Target(url, backend.target.api_key), reply["waited_ms"], reply["cold"])
    finally:
        conn.send({"op": "release", "lease": name})


async def command(address: str, op: str, backend_id: int | None = None, wait: bool = True) -> dict[str, Any]:
    """An operator's request (load, unload, restart, status) on its own short connection."""
    conn = SupervisorConnection(address)
    try:
        reply = await conn.call({"op": op, "backend": backend_id, "wait": wait})
    except (OSError, TimeoutError, protocol.ProtocolError) as exc:
        raise unavailable(conn.node or "?", address, exc) from exc
    finally:
        await conn.close()
    if not reply.get("ok"):
        raise refused(reply)
    return reply


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
