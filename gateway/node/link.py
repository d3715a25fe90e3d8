"""A gateway process's link to a node's supervisor: one persistent connection per supervisor (per event loop), so
that asking for a model costs one local round trip, and a mirror of the states it pushes.

Every wait is bounded: connecting and the handshake by protocol.HANDSHAKE_TIMEOUT, a supervisor that goes silent
(stopped, hung, its host gone with the connection open) by protocol.CLIENT_SILENCE — pings flow both ways every
second — and a reply by the call's own bound. A request whose supervisor does not answer gets a 503 within seconds;
a request queued behind a legitimate cold load waits for it, up to MODEL_LOAD_TIMEOUT.

`lease()` is what the request path uses: the model's URL and key for the time of one upstream call, given back
however the call ends (a client that leaves while the model loads leaves its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from gateway import errors
from gateway.node import protocol
from gateway.node.identity import node_name
from gateway.prefix import Boundary, as_message
from gateway.upstream import Target

if TYPE_CHECKING:
    from gateway.models import Supervisor

logger = logging.getLogger(__name__)

KEEP_EVERY = 2.0  # seconds between reconnection attempts for watchers
COMMAND_TIMEOUT = 10.0  # seconds an operator's status, or a load or unload without waiting, may take
REPLY_MARGIN = 5.0  # seconds a waiting call allows beyond the supervisor's own bound
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


def tcp_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address(node: str, tcp: str, socket: str | None) -> str:
    """How this process reaches a node's supervisor: its Unix socket when it runs on this node (only the service
    user can open it), otherwise TCP ("host:port")."""
    if socket and node == node_name() and os.path.exists(socket):
        return f"unix:{socket}"
    return tcp


def address_of(supervisor: Supervisor) -> str:
    return address(supervisor.node, tcp_address(supervisor.host, supervisor.port), supervisor.socket)


class SupervisorConnection:
    """One connection to one supervisor; reconnects on the next call after it drops."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.node = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.session: protocol.Session | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.connecting = asyncio.Lock()
        self.reading: asyncio.Task | None = None
        self.pinging: asyncio.Task | None = None
        self.heard = 0.0
        self.models: dict[int, dict[str, Any]] = {}  # the mirror: backend id → state, as last pushed
        self.keys: dict[int, str] = {}  # backend id → its running process's key
        self.budget: dict[str, Any] = {}
        self.listeners: set[Listener] = set()
        self.keeping: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("unix:"):
            return await asyncio.open_unix_connection(self.address[5:])
        host, _, port = self.address.rpartition(":")
        return await asyncio.open_connection(host.strip("[]"), int(port))

    async def connect(self) -> None:
        async with self.connecting:
            if self.connected:
                return
            reader, writer = await asyncio.wait_for(self._open(), protocol.HANDSHAKE_TIMEOUT)
            try:
                session, welcome = await self._handshake(reader, writer)
            except BaseException:
                writer.close()
                raise
            self.reader, self.writer, self.session = reader, writer, session
            self.node = str(welcome.get("node", ""))
            self.heard = time.monotonic()
            self._mirror(welcome.get("models") or [], welcome.get("budget") or {})
            self.reading = asyncio.ensure_future(self._read(reader, session))
            self.pinging = asyncio.ensure_future(self._ping())
            self._notify({"op": "connected", "node": self.node})

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[protocol.Session, dict[str, Any]]:
        """Prove ourselves, and have the supervisor prove itself before anything else is said."""
        challenge = await protocol.read_plain(reader)
        if not challenge or challenge.get("op") != "challenge":
            raise SupervisorUnavailable("it did not send its challenge")
        server_nonce, client_nonce = str(challenge.get("nonce") or ""), protocol.new_nonce()
        proof = protocol.proof("client", server_nonce, client_nonce)
        writer.write(protocol.plain({"op": "hello", "nonce": client_nonce, "proof": proof}))
        answer = await protocol.read_plain(reader)
        if not answer or answer.get("op") != "proven":
            raise SupervisorUnavailable((answer or {}).get("message") or "it closed the connection")
        if len(server_nonce) < 16 or not protocol.proof_matches(
            "server", server_nonce, client_nonce, answer.get("proof")
        ):
            raise SupervisorUnavailable(
                "it could not prove it holds this installation's SECRET_KEY: not our supervisor"
            )
        session = protocol.Session("client", server_nonce, client_nonce)
        welcome = await asyncio.wait_for(session.read(reader), protocol.HANDSHAKE_TIMEOUT)
        if not welcome or welcome.get("op") != "welcome":
            raise SupervisorUnavailable("it sent no welcome")
        return session, welcome

    async def _read(self, reader: asyncio.StreamReader, session: protocol.Session) -> None:
        try:
            while (message := await session.read(reader)) is not None:
                self.heard = time.monotonic()
                op = message.get("op")
                if op == "reply":
                    future = self.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                    if future is not None and not future.done():
                        future.set_result(message)
                elif op == "state":
                    if message.get("key") is not None:
                        self.keys[message["model"]["backend"]] = message["key"]
                    self._mirror([message["model"]], message.get("budget") or {})
                elif op != "ping":
                    self._notify(message)  # what a subscriber asked to be told (the sampler: requests in flight)
        except (ConnectionError, protocol.ProtocolError) as exc:
            logger.warning("supervisor %s: %s", self.address, exc)
        finally:
            self._lost("the connection was lost")

    async def _ping(self) -> None:
        """Ping every second; a supervisor silent for CLIENT_SILENCE is gone: every call waiting on it fails."""
        while self.connected:
            await asyncio.sleep(protocol.PING_EVERY)
            if time.monotonic() - self.heard > protocol.CLIENT_SILENCE:
                logger.warning("supervisor %s: silent for %g s: dropped", self.address, protocol.CLIENT_SILENCE)
                self._lost(f"it was silent for {protocol.CLIENT_SILENCE:g} s")
                return
            self.send({"op": "ping"})

    def _lost(self, reason: str) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = self.session = None
        if self.reading is not None and self.reading is not asyncio.current_task():
            self.reading.cancel()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(SupervisorUnavailable(reason))
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

    async def call(self, message: dict[str, Any], timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """Send a request and wait for its reply, at most `timeout` seconds (a cancelled wait leaves it unread)."""
        if not self.connected:
            await self.connect()
        message_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        self.send({**message, "id": message_id})
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(message_id, None)

    def send(self, message: dict[str, Any]) -> None:
        """Fire and forget; on a dropped connection the supervisor has released everything already."""
        if self.connected and self.session is not None:
            assert self.writer is not None
            self.writer.write(self.session.frame(message))

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
        for task in (self.keeping, self.pinging):
            if task is not None:
                task.cancel()
        if self.reading is not None:
            self.reading.cancel()
            with contextlib.suppress(BaseException):
                await self.reading
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_connections: dict[tuple[asyncio.AbstractEventLoop, str], SupervisorConnection] = {}


def known_key(backend_id: int) -> str:
    """The key of a managed backend's running process, as its supervisor last pushed it to this process (any
    thread may ask); empty when this process is not linked to that supervisor."""
    for connection in list(_connections.values()):
        if key := connection.keys.get(backend_id):
            return key
    return ""


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
    slot: int | None = None  # the llama-server slot to send the request to (id_slot)
    restored: bool = False  # a saved cache of the prompt's start was restored into it


def model_url(address: str, port: int) -> str:
    """The URL of a managed model's llama-server, from its supervisor's address and the port it was given: on the
    supervisor's host (this one when reached by its socket), IPv6 addresses in brackets."""
    if address.startswith("unix:"):
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.LLAMA_HOST, settings.LLAMA_HOST)
    else:
        host = address.rpartition(":")[0].strip("[]")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def _leased(node: str, address: str, message: dict[str, Any], request_id: str) -> AsyncIterator[dict[str, Any]]:
    """The supervisor's grant of `message` (an acquire or an admit) for the time of the block; released when the
    block ends, however it ends."""
    if not address:
        raise Refused(
            503, f"no model supervisor has started on node {node}: run `manage.py supervise` there",
            "unavailable_error", None, "supervisor_unavailable", {"Retry-After": "5"},
        )  # fmt: skip
    conn = connection(address)
    name = f"{request_id}.{next(_leases)}"
    try:
        reply = await conn.call({**message, "lease": name}, settings.MODEL_LOAD_TIMEOUT + REPLY_MARGIN)
    except asyncio.CancelledError:
        conn.send({"op": "release", "lease": name})  # the client left while waiting: leave the queue
        raise
    except (OSError, TimeoutError, protocol.ProtocolError) as exc:
        conn.send({"op": "release", "lease": name})
        raise unavailable(node, address, exc or "no answer") from exc
    if not reply.get("ok"):
        raise refused(reply)
    try:
        yield reply
    finally:
        conn.send({"op": "release", "lease": name})


@contextlib.asynccontextmanager
async def lease(
    backend: int, node: str, address: str, request_id: str, conversation: Sequence[Boundary] = (), owner: str = ""
) -> AsyncIterator[Grant]:
    """A managed backend's URL and key for the time of the block (loaded on demand). `address` is how to reach its
    node's supervisor (`address`, above). A conversation's prefix hashes (gateway.prefix) and its API key let the
    supervisor choose the slot that holds its start, or restore a saved cache of it."""
    message: dict[str, Any] = {"op": "acquire", "backend": backend}
    if conversation:
        message |= {"prefix": as_message(list(conversation)), "owner": owner}
    async with _leased(node, address, message, request_id) as reply:
        target = Target(model_url(address, reply["port"]), str(reply.get("key") or ""))
        slot = reply.get("slot")
        yield Grant(target, reply["waited_ms"], reply["cold"], slot if isinstance(slot, int) else None,
                    bool(reply.get("restored")))  # fmt: skip


@contextlib.asynccontextmanager
async def admit(model: str, generation: bool, node: str, address: str, request_id: str) -> AsyncIterator[float]:
    """Admission for a request to an external backend of a supervised node, for the time of the block: the node's
    heat and power apply to it, and its energy is measured, as for a managed model's. Yields the milliseconds it
    waited for its turn (a hot device serves one generation at a time per model)."""
    message = {"op": "admit", "model": model, "generation": generation}
    async with _leased(node, address, message, request_id) as reply:
        yield float(reply.get("waited_ms") or 0.0)


async def command(address: str, op: str, backend_id: int | None = None, wait: bool = True) -> dict[str, Any]:
    """An operator's request (load, unload, restart, status) on its own short connection."""
    conn = SupervisorConnection(address)
    timeout = (
        settings.MODEL_LOAD_TIMEOUT + REPLY_MARGIN if wait and op in ("load", "restart", "unload") else COMMAND_TIMEOUT
    )
    try:
        reply = await conn.call({"op": op, "backend": backend_id, "wait": wait}, timeout)
    except (OSError, TimeoutError, protocol.ProtocolError) as exc:
        raise unavailable(conn.node or "?", address, exc or "no answer") from exc
    finally:
        await conn.close()
    if not reply.get("ok"):
        raise refused(reply)
    return reply
