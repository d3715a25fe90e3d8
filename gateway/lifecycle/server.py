"""The supervisor's protocol server: gateways on this node connect over a Unix socket in a folder only the service
user may enter; other nodes' gateways over TCP. Either way each side proves it holds the installation's key before a
word is said, and every later frame is sealed (gateway.node.protocol).

Messages of one connection reach the machine in the order they were sent, each handled before the next is read.
A connection that stays silent (a stopped gateway process, a host that vanished), or that stops reading what it
is sent, is dropped, and with it whatever it held.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.node import protocol

logger = logging.getLogger(__name__)

UNIX_PATH_MAX = 104  # bytes a Unix socket's path may have (108 on Linux, 104 on some others)
TCP_RETRY = 5.0  # seconds between attempts to bind a TCP port another process holds
MAX_UNSENT = 4 * 1024 * 1024  # bytes waiting for a peer that does not read: past this it is dropped


class Connection:
    """One connected holder: a gateway process, an operator's command, or the node's sampler."""

    def __init__(self, holder: int, writer: asyncio.StreamWriter, session: protocol.Session) -> None:
        self.holder = holder
        self.writer = writer
        self.session = session
        self.energy = False  # the sampler: told the requests in flight and every lease's end
        self.heard = time.monotonic()

    def send(self, message: dict[str, Any]) -> None:
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > MAX_UNSENT:
            logger.warning("supervisor: dropping holder %d, which does not read what it is sent", self.holder)
            self.writer.transport.abort()
            return
        self.writer.write(self.session.frame(message))


class Server:
    def __init__(
        self,
        node: str,
        receive: Callable[[Connection, dict[str, Any]], None],
        closed: Callable[[Connection], None],
        welcome: Callable[[], dict[str, Any]],
    ) -> None:
        self.node = node
        self.receive = receive
        self.closed = closed
        self.welcome = welcome
        self.connections: dict[int, Connection] = {}
        self.holders = itertools.count(1)
        self.servers: list[asyncio.Server] = []
        self.tasks: set[asyncio.Task] = set()
        self.socket_path: Path | None = None
        self.port: int | None = None

    async def listen_unix(self, path: Path) -> bool:
        """Listen on `path` (in a 0700 folder); False when the path is too long for a Unix socket."""
        if len(str(path).encode()) >= UNIX_PATH_MAX:
            logger.warning("supervisor: %s is too long for a Unix socket: local gateways will use TCP", path)
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        if path.exists():
            if await _answers(path):
                raise RuntimeError(f"another supervisor listens on {path}")
            path.unlink()
        self.servers.append(await asyncio.start_unix_server(self._serve, path))
        path.chmod(0o600)
        self.socket_path = path
        return True

    async def listen_tcp(self, host: str, port: int) -> bool:
        """Listen on host:port; False when another process holds the port (see `keep_trying_tcp`)."""
        try:
            server = await asyncio.start_server(self._serve, host, port)
        except OSError as exc:
            logger.error("supervisor: cannot listen on %s:%d (%s); trying again every %g s", host, port, exc, TCP_RETRY)
            return False
        self.servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        return True

    async def keep_trying_tcp(self, host: str, port: int, bound: Callable[[int], Awaitable[None]]) -> None:
        """While another process holds the port, try again (this node's gateways use the socket meanwhile)."""
        while not await self.listen_tcp(host, port):
            await asyncio.sleep(TCP_RETRY)
        assert self.port is not None
        await bound(self.port)

    def start_pinging(self) -> None:
        self._spawn(self._ping())

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(protocol.PING_EVERY)
            now = time.monotonic()
            for connection in list(self.connections.values()):
                if now - connection.heard > protocol.SERVER_SILENCE:
                    logger.warning("supervisor: holder %d was silent for %g s: dropped", connection.holder,
                                   protocol.SERVER_SILENCE)  # fmt: skip
                    connection.writer.transport.abort()
                else:
                    connection.send({"op": "ping"})

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection: Connection | None = None
        try:
            session = await self._handshake(reader, writer)
            if session is None:
                return
            connection = Connection(next(self.holders), writer, session)
            self.connections[connection.holder] = connection
            connection.send({"op": "welcome", "node": self.node, **self.welcome()})
            while (message := await session.read(reader)) is not None:
                connection.heard = time.monotonic()
                if message.get("op") != "ping":
                    self.receive(connection, message)
        except (TimeoutError, ConnectionError, protocol.ProtocolError) as exc:
            logger.info("supervisor: dropping a connection: %s", exc)
        except Exception:
            logger.exception("supervisor: a connection failed")
        finally:
            if connection is not None:
                self.connections.pop(connection.holder, None)
                self.closed(connection)
            writer.close()

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> protocol.Session | None:
        server_nonce = protocol.new_nonce()
        writer.write(protocol.plain({"op": "challenge", "nonce": server_nonce, "node": self.node}))
        hello = await protocol.read_plain(reader)
        client_nonce = str((hello or {}).get("nonce") or "")
        if (
            not hello
            or hello.get("op") != "hello"
            or len(client_nonce) < 16
            or not protocol.proof_matches("client", server_nonce, client_nonce, hello.get("proof"))
        ):
            writer.write(
                protocol.plain({"op": "error", "message": "bad proof: is SECRET_KEY the same as the supervisor's?"})
            )
            await writer.drain()
            return None
        writer.write(protocol.plain({"op": "proven", "proof": protocol.proof("server", server_nonce, client_nonce)}))
        return protocol.Session("server", server_nonce, client_nonce)

    def send(self, holder: int, message: dict[str, Any]) -> None:
        connection = self.connections.get(holder)
        if connection is not None:
            connection.send(message)

    def broadcast(self, message: dict[str, Any], energy_only: bool = False) -> None:
        for connection in list(self.connections.values()):
            if connection.energy or not energy_only:
                connection.send(message)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.tasks):
            task.cancel()
        for connection in list(self.connections.values()):
            connection.writer.close()
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
