"""The node's supervisor: the one owner of its managed models' llama-server processes and of their memory.

It is a shell around the state machine (gateway.lifecycle.machine): messages from gateways, processes that start,
become ready and exit, and the clock become events, each one step of the machine; the steps' effects become
replies, processes started or stopped (runner), rows written and states pushed (store) and messages to the sampler
(server). Everything runs on one asyncio loop, and no step waits for anything.

On SIGTERM it drains: nothing new is granted, generations in flight may finish (up to SUPERVISOR_DRAIN_SECONDS),
then every model is stopped (SIGTERM, SIGKILL after MODEL_STOP_GRACE) before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from gateway import llama
from gateway.lifecycle import config, memory, promptcache
from gateway.lifecycle.machine import (
    Acquire,
    Admit,
    Cap,
    Disconnected,
    Drain,
    Drained,
    Effect,
    Event,
    Exited,
    Heard,
    Machine,
    Measure,
    MemoryNow,
    Operate,
    Ready,
    Refresh,
    Registry,
    Release,
    Reply,
    Rules,
    SavedCaches,
    Spawn,
    Tell,
    Terminate,
    Tick,
)
from gateway.lifecycle.runner import Runner, loopback
from gateway.lifecycle.server import Connection, Server
from gateway.lifecycle.store import Store
from gateway.models import Backend, ManagedRuntime
from gateway.node.admission import Decision

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
CLOCK_EVERY = 1.0  # seconds between looks at the memory, the processes' peaks and what is due
FLUSH_EVERY = 1.0  # seconds between writes of changed counters
HEARTBEAT_EVERY = 5.0
REFRESH_EVERY = 10.0  # seconds between reads of the registry (admin edits)
SAVE_LIMIT = 10.0  # seconds a model's saves may delay its stop
OPERATIONS = ("load", "unload", "restart", "status")


def rules() -> Rules:
    return Rules(
        load_timeout=settings.MODEL_LOAD_TIMEOUT,
        queue_length=settings.MODEL_QUEUE_LENGTH,
        failed_retry=settings.MODEL_FAILED_RETRY_SECONDS,
        drain_grace=settings.SUPERVISOR_DRAIN_SECONDS,
        admission_stale=settings.ADMISSION_STALE_SECONDS,
    )


def read_setups(node: str) -> dict[int, config.Setup]:
    """The node's enabled managed backends as the supervisor runs them (database and GGUF headers: off the loop)."""
    rows = Backend.objects.filter(managed=True, enabled=True, model__enabled=True, node=node)
    backends = list(rows.select_related("model").order_by("id"))
    runtimes = {r.backend_id: r for r in ManagedRuntime.objects.filter(backend__in=backends)}
    setups = {}
    for backend in backends:
        setup = config.read(backend)
        if (runtime := runtimes.get(backend.id)) is not None:
            setup = config.with_measurement(setup, runtime.measured_bytes, runtime.measured_for)
        setups[backend.id] = setup
    return setups


class NodeSupervisor:
    def __init__(
        self, node: str, host: str, port: int, socket_path: Path | None = None, cap: Cap | None = None
    ) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.socket_path = socket_path
        self.cap = cap
        self.machine: Machine | None = None
        self.caches = promptcache.PromptCaches()
        self.runner = Runner(self.feed, promptcache.save_path)
        self.server = Server(node, self.receive, self.closed, self.welcome)
        self.store: Store | None = None
        self.tasks: set[asyncio.Task] = set()
        self.wake = asyncio.Event()
        self.refreshing: asyncio.Task | None = None
        self.refresh_again = False
        self.drained = asyncio.Event()
        self.closing = False  # set once drained: the clock's rounds end (Python 3.11's wait_for can lose a cancel)

    # --- life of the supervisor ---

    async def start(self) -> None:
        cap = self.cap or await asyncio.to_thread(memory.cap)
        self.machine = Machine(self.node, cap, rules())
        self.store = Store(self.machine, lambda message: self.server.broadcast(message))
        self.feed(MemoryNow(await asyncio.to_thread(memory.available_for_models, [])))
        with contextlib.suppress(llama.LlamaError):  # a missing binary fails each load, with its message
            await asyncio.to_thread(llama.supported_flags, str(llama.server_binary()))
        self.feed(Registry(await self.store.read(lambda: read_setups(self.node))))
        socket = ""
        if self.socket_path is not None and await self.server.listen_unix(self.socket_path):
            socket = str(self.socket_path)
        bound = bool(self.host) and await self.server.listen_tcp(self.host, self.port)
        await self.store.record_address(self.advertised_host(), self.server.port, socket)
        if self.host and not bound:
            self._spawn(self.server.keep_trying_tcp(self.host, self.port, self._bound))
        self.server.start_pinging()
        self._spawn(self._clock())
        logger.info(
            "supervisor of node %s on %s and %s:%s; budget %s (%s)", self.node, socket or "no socket", self.host,
            self.server.port, _mib(self.machine.budget()), cap.source,
        )  # fmt: skip

    async def _bound(self, port: int) -> None:
        self.port = port
        assert self.store is not None
        await self.store.record_address(self.advertised_host(), port, str(self.server.socket_path or ""))

    def advertised_host(self) -> str:
        # A wildcard address is no address to connect to: other nodes reach this one by its host name.
        import socket

        return socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host

    async def stop(self) -> None:
        """Drain, then stop every model and record it stopped; bounded by the drain grace and the stop grace."""
        self.feed(Drain())
        limit = settings.SUPERVISOR_DRAIN_SECONDS + SAVE_LIMIT + settings.MODEL_STOP_GRACE + 5
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drained.wait(), limit)
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        await self.server.close()
        await self.runner.close()
        assert self.store is not None
        await self.store.flush(heartbeat=True)
        self.store.close()

    # --- events in ---

    def feed(self, event: Event) -> None:
        """One step of the machine, then its effects, in order."""
        assert self.machine is not None and self.store is not None
        for effect in self.machine.step(event, time.monotonic()):
            self._carry_out(effect)
        if isinstance(event, Ready) and (entry := self.machine.entries.get(event.backend)) is not None:
            if entry.generation == event.generation and entry.port is not None:
                self.caches.ready(event.backend, event.generation, entry.port, entry.key, entry.setup,
                                  loopback(settings.LLAMA_HOST))  # fmt: skip
        elif isinstance(event, Exited):
            self.caches.exited(event.backend)
        elif isinstance(event, Release):
            self.caches.released(event.lease)
        elif isinstance(event, Disconnected):
            self.caches.disconnected(event.holder)
        self.store.after_step()
        self.wake.set()  # the next deadline may have moved

    def receive(self, connection: Connection, message: dict[str, Any]) -> None:
        """A message from a holder, fed to the machine before the next one is read."""
        op = message.get("op")
        holder, message_id = connection.holder, message.get("id")
        backend = message.get("backend")
        if op == "acquire" and isinstance(backend, int):
            self.caches.asked(holder, message_id, backend, str(message.get("lease")), message)
            self.feed(Acquire(holder, message_id, backend, str(message.get("lease"))))
        elif op == "admit":
            model, lease = str(message.get("model")), str(message.get("lease"))
            self.feed(Admit(holder, message_id, model, bool(message.get("generation", True)), lease))
        elif op == "release":
            self.feed(Release(holder, str(message.get("lease"))))
        elif op == "admission":
            self.feed(Heard(Decision.of(message)))
        elif op == "subscribe_energy":
            connection.energy = True
            assert self.machine is not None
            connection.send(self.machine.in_flight_message(time.monotonic()))
        elif op in OPERATIONS and (op == "status" or isinstance(backend, int)):
            # An operator expects the admin's latest edits to apply: the registry is read first.
            self._spawn(self._operate(Operate(holder, message_id, op, backend, bool(message.get("wait", True)))))
        else:
            connection.send({"op": "reply", "id": message_id, "ok": False, "status": 400, "code": "bad_message",
                             "message": f"cannot {op!r}", "retry_after": None})  # fmt: skip

    async def _operate(self, operation: Operate) -> None:
        await self.refresh()
        self.feed(operation)

    def closed(self, connection: Connection) -> None:
        self.feed(Disconnected(connection.holder))

    def welcome(self) -> dict[str, Any]:
        assert self.machine is not None
        return {key: value for key, value in self.machine.status().items() if key != "ok"}

    # --- effects out ---

    def _carry_out(self, effect: Effect) -> None:
        if isinstance(effect, Reply):
            if (lease := self.caches.answering(effect.holder, effect.message_id, effect.body)) is not None:
                self._spawn(self._grant(effect, lease))
            else:
                self.server.send(effect.holder, {"op": "reply", "id": effect.message_id, **effect.body})
        elif isinstance(effect, Spawn):
            self.runner.spawn(effect.backend, effect.generation, effect.setup)
        elif isinstance(effect, Terminate):
            if effect.cuts:
                self.runner.terminate(effect.backend, effect.generation)
            else:
                self._spawn(self._save_and_stop(effect))
        elif isinstance(effect, Measure):
            self.runner.measure(effect.backend, effect.generation)
        elif isinstance(effect, Tell):
            self.server.broadcast(effect.message, energy_only=True)
        elif isinstance(effect, Refresh):
            self._spawn(self.refresh())
        elif isinstance(effect, Drained):
            self.drained.set()

    async def _grant(self, reply: Reply, lease: str) -> None:
        """A grant names its slot, into which a saved cache of the prompt's start may be restored first."""
        body = reply.body
        try:
            body = await self.caches.granted(lease, reply.body)
        except Exception:
            logger.exception("supervisor: choosing the slot of lease %s failed", lease)
        finally:
            self.server.send(reply.holder, {"op": "reply", "id": reply.message_id, **body})

    async def _save_and_stop(self, stop: Terminate) -> None:
        """A planned stop saves the prompts worth keeping first; a save never keeps a model from stopping."""
        assert self.machine is not None
        someone_waits = any(entry.waiters for entry in self.machine.entries.values())
        try:
            await asyncio.wait_for(self.caches.save(stop.backend, stop.generation, someone_waits), SAVE_LIMIT)
        except Exception:
            logger.exception("supervisor: saving the prompt caches of backend %s failed", stop.backend)
        finally:
            self.runner.terminate(stop.backend, stop.generation)
        if (entry := self.machine.entries.get(stop.backend)) is not None:
            self.feed(SavedCaches(stop.backend, **self.caches.summary(entry.model_id)))

    async def _sweep(self) -> None:
        assert self.machine is not None
        configs = [e.setup.config for e in self.machine.entries.values() if e.setup.config is not None]
        await self.caches.sweep(configs)
        for entry in list(self.machine.entries.values()):
            self.feed(SavedCaches(entry.backend_id, **self.caches.summary(entry.model_id)))

    # --- the clock ---

    async def _clock(self) -> None:
        """Memory, peaks and whatever falls due; rows flushed every second, the registry read every 10 s. A
        failure in one round is logged and the next round runs: the heartbeat never stops."""
        assert self.machine is not None and self.store is not None
        last_flush = last_beat = last_refresh = time.monotonic()
        last_sweep = last_refresh - settings.KV_CACHE_SWEEP_SECONDS
        while not self.closing:
            delay = min(CLOCK_EVERY, max(self.machine.next_deadline() - time.monotonic(), 0.0))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)
            try:
                now = time.monotonic()
                if now - last_flush >= FLUSH_EVERY:
                    last_flush = now
                    self.runner.watch_peaks()
                    self.feed(MemoryNow(await asyncio.to_thread(memory.available_for_models, self.runner.pids())))
                    beat = now - last_beat >= HEARTBEAT_EVERY
                    last_beat = now if beat else last_beat
                    await self.store.flush(heartbeat=beat)
                if now - last_refresh >= REFRESH_EVERY:
                    last_refresh = now
                    self._spawn(self.refresh())
                if now - last_sweep >= settings.KV_CACHE_SWEEP_SECONDS:
                    last_sweep = now
                    self._spawn(self._sweep())
                self.feed(Tick())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("supervisor: a round of housekeeping failed")
                await asyncio.sleep(CLOCK_EVERY)

    async def refresh(self) -> None:
        """Read the registry again (once at a time; a request for another read during one makes one more)."""
        if self.refreshing is not None and not self.refreshing.done():
            self.refresh_again = True
            with contextlib.suppress(Exception):
                await asyncio.shield(self.refreshing)
            return
        self.refreshing = asyncio.ensure_future(self._read_registry())
        await asyncio.shield(self.refreshing)

    async def _read_registry(self) -> None:
        assert self.store is not None
        while True:
            self.refresh_again = False
            try:
                self.feed(Registry(await self.store.read(lambda: read_setups(self.node))))
            except DatabaseError:
                logger.exception("supervisor: cannot read the registry")
            except Exception:
                logger.exception("supervisor: reading the registry failed")
            if not self.refresh_again:
                return

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("supervisor task failed", exc_info=task.exception())


def _mib(value: int | None) -> str:
    return "none" if value is None else f"{value // MIB} MiB"
