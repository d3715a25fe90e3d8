"""The node's supervisor: the one owner of its managed models' llama-server processes and of their counts.

Gateway processes ask it for a model (`acquire`); it answers at once when the model is ready, otherwise the request
joins the model's queue and the model is loaded: once, whatever the number of waiters, after idle models are
evicted (least recently used first) until the estimate fits the node's budget. It stops idle models after their
TTL, notices crashed ones, and writes every state change to the database (counters at most once a second) and
pushes it to every connected gateway process. One asyncio loop owns all of it, so no state needs a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import secrets
import shlex
import socket
import subprocess
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from gateway import llama, upstream
from gateway.lifecycle import estimate, memory, protocol
from gateway.models import Backend, ManagedRuntime, ModelKind, ModelState, Supervisor
from monitor.admission import HARD, OVERHEATED, SOFT, Decision

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
READY_POLL = 0.025  # seconds between /health probes while a model loads
FLUSH_EVERY = 1.0  # seconds between writes of changed counters (and pushes of them)
HEARTBEAT_EVERY = 5.0
REFRESH_EVERY = 10.0  # seconds between re-reads of the managed backends (admin edits)
LOG_TAIL_LINES = 12
ACTIVE = (ModelState.STARTING, ModelState.READY, ModelState.STOPPING)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


class Refusal(Exception):
    """An answer that is not a grant: the gateway turns it into an OpenAI-shaped error with Retry-After."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reply = protocol.refusal(status, code, message, retry_after)


@dataclass(frozen=True)
class Config:
    """A managed backend as its supervisor runs it."""

    backend_id: int
    model_id: str
    embeddings: bool
    gguf: str
    mmproj: str
    ctx_size: int
    parallel: int
    gpu_layers: int | None
    llama_args: str
    api_key: str
    idle_ttl: float  # 0 = never
    pinned: bool

    @classmethod
    def of(cls, backend: Backend) -> Config:
        ttl = settings.MODEL_IDLE_TTL if backend.idle_ttl is None else backend.idle_ttl
        return cls(
            backend.id, backend.model.model_id, backend.model.kind == ModelKind.EMBEDDING, backend.gguf_path,
            backend.mmproj_path, backend.ctx_size, backend.parallel, backend.gpu_layers, backend.llama_args,
            backend.api_key, float(ttl), backend.pinned,
        )  # fmt: skip

    def command(self, port: int) -> list[str]:
        binary = str(llama.server_binary())
        known = llama.supported_flags(binary)
        # The supervisor has checked the memory already: llama.cpp's own fitting would load the model twice.
        # -lv 4 makes it log its buffer sizes, which are what the model measurably uses.
        ours = (["--fit", "off"] if "--fit" in known else []) + (["-lv", "4"] if "--verbosity" in known else [])
        return llama.command(
            self.gguf, port, settings.LLAMA_HOST, self.ctx_size, self.parallel, embeddings=self.embeddings,
            mmproj=self.mmproj, gpu_layers=self.gpu_layers, api_key=self.api_key,
            extra_args=[*ours, *shlex.split(self.llama_args)], binary=binary,
        )  # fmt: skip

    @property
    def signature(self) -> str:
        """What a memory measurement depends on; a measurement for another signature is not reused."""
        parts = (
            self.gguf,
            self.mmproj,
            self.ctx_size,
            self.parallel,
            self.gpu_layers,
            self.llama_args,
            self.embeddings,
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def options(self) -> estimate.Options:
        return estimate.Options.from_flags(self.ctx_size, self.parallel, self.llama_args)


@dataclass
class Waiter:
    lease: str
    conn: Connection
    task: asyncio.Task | None
    future: asyncio.Future
    since: float = field(default_factory=time.monotonic)


@dataclass
class Model:
    config: Config
    state: str = ModelState.STOPPED
    since: datetime = field(default_factory=timezone.now)
    pid: int | None = None
    port: int | None = None
    process: asyncio.subprocess.Process | None = None
    estimate: estimate.Estimate | None = None
    estimate_error: str = ""
    estimate_for: str = ""
    measured: int | None = None
    measured_for: str = ""
    in_flight: dict[str, Connection] = field(default_factory=dict)
    lease_started: dict[str, float] = field(default_factory=dict)  # monotonic time of each grant
    waiters: OrderedDict[str, Waiter] = field(default_factory=OrderedDict)
    last_used: datetime | None = None
    unload_at: datetime | None = None
    idle_timer: asyncio.TimerHandle | None = None
    failed_until: float = 0.0
    last_error: str = ""
    exit_code: int | None = None
    load_seconds: float | None = None
    wanted_since: float | None = None  # an operator asked for it to be loaded
    watchers: list[asyncio.Future] = field(default_factory=list)  # operator loads waiting for ready or failed
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    log_path: Path | None = None
    log_offset: int = 0
    device_bytes: int | None = None  # its buffers outside the process's RSS (GPU), from its log

    @property
    def need(self) -> int:
        """Bytes to reserve for it: what it was seen using with this command line, else the estimate."""
        if self.measured and self.measured_for == self.config.signature:
            return self.measured
        return self.estimate.total if self.estimate else 0

    def first_wait(self) -> float:
        times = [w.since for w in self.waiters.values()]
        if self.wanted_since is not None:
            times.append(self.wanted_since)
        return min(times, default=math.inf)

    def retry_after(self) -> int:
        return max(1, math.ceil(self.load_seconds or 5))

    def snapshot(self, node: str) -> dict[str, Any]:
        """Its state in the shape GET /api/models/running gives (gateway.lifecycle.states)."""
        measured = self.measured if self.measured_for == self.config.signature else None
        return {
            "id": self.config.model_id,
            "backend": self.config.backend_id,
            "node": node,
            "state": str(self.state),
            "since": _iso(self.since),
            "pid": self.pid,
            "port": self.port,
            "memory": {
                "estimated_bytes": self.estimate.total if self.estimate else None,
                "estimate": self.estimate.as_dict() if self.estimate else None,
                "measured_bytes": measured,
            },
            "in_flight": len(self.in_flight),
            "waiting": len(self.waiters),
            "last_used": _iso(self.last_used),
            "unload_at": _iso(self.unload_at),
            "idle_ttl": self.config.idle_ttl,
            "pinned": self.config.pinned,
            "load_seconds": self.load_seconds,
            "last_error": self.last_error or self.estimate_error,
            "exit_code": self.exit_code,
        }


class Connection:
    """One gateway process (or operator command): what it holds, so that a dropped connection releases it all."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.leases: dict[str, Model] = {}
        self.waiting: dict[str, Model] = {}
        self.tasks: set[asyncio.Task] = set()
        self.energy = False  # the node's sampler: told every change of the requests in flight and every lease's end

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(protocol.encode(message))


class NodeSupervisor:
    def __init__(self, node: str, host: str, port: int, budget: memory.Budget | None = None) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.budget = budget
        self.models: dict[int, Model] = {}
        self.connections: set[Connection] = set()
        self.server: asyncio.Server | None = None
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supervisor-db")  # writes stay in order
        self.dirty: set[int] = set()
        self.scheduling: asyncio.Task | None = None
        self.housekeeping: asyncio.Task | None = None
        self.reschedule = False
        self.background: set[asyncio.Task] = set()
        self.stopping = False
        self.admission = Decision()  # the device's, as its sampler decided it (monitor.admission)

    # --- life of the supervisor ---

    async def start(self) -> None:
        if self.budget is None:
            self.budget = await asyncio.to_thread(memory.node_budget)
        with contextlib.suppress(llama.LlamaError):  # a missing binary fails each load, with its message
            await asyncio.to_thread(llama.supported_flags, str(llama.server_binary()))
        await self.refresh()
        self.server = await asyncio.start_server(self.serve, self.host, self.port, limit=protocol.MAX_LINE)
        self.port = self.server.sockets[0].getsockname()[1]
        await self._in_db(self._record_address)
        logger.info(
            "supervisor of node %s on %s:%d; budget %d MiB (%s)",
            self.node, self.host, self.port, self.budget.total // MIB, self.budget.source,
        )  # fmt: skip
        for model in self.models.values():
            if model.config.pinned:
                model.wanted_since = time.monotonic()
        self.housekeeping = self._spawn(self._housekeeping())
        self.kick()

    async def stop(self) -> None:
        """Stop every model (SIGTERM, then SIGKILL after the grace period) and record them stopped."""
        self.stopping = True
        if self.server is not None:
            self.server.close()
        for task in (self.housekeeping, self.scheduling):
            if task is not None:
                task.cancel()
        for conn in list(self.connections):
            conn.writer.close()
        await asyncio.gather(*(self._stop_process(m, "the supervisor is stopping") for m in self.models.values()))
        await self._flush()
        await asyncio.get_running_loop().run_in_executor(self.db, close_old_connections)
        self.db.shutdown(wait=True)

    def _record_address(self) -> None:
        Supervisor.objects.update_or_create(
            node=self.node,
            defaults={
                "host": self.advertised_host(), "port": self.port, "pid": _pid(), "started": timezone.now(),
                "heartbeat": timezone.now(), "budget_bytes": self.budget.total if self.budget else None,
                "budget_source": self.budget.source if self.budget else "", "used_bytes": self.used(),
            },
        )  # fmt: skip

    def advertised_host(self) -> str:
        # A wildcard address is no address to connect to: other nodes reach this one by its host name.
        return socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host

    async def _housekeeping(self) -> None:
        last_refresh = last_beat = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            now = time.monotonic()
            if now - last_refresh >= REFRESH_EVERY:
                last_refresh = now
                with contextlib.suppress(DatabaseError):
                    await self.refresh()
            beat = now - last_beat >= HEARTBEAT_EVERY
            if self.dirty or beat:
                last_beat = now
                await self._flush()

    # --- the registry of managed backends ---

    async def refresh(self) -> None:
        """Read this node's managed backends: new ones appear stopped, edits apply at their next start, and
        removed ones are stopped once idle."""
        backends = await self._in_db(self._load_backends)
        seen = set()
        for backend, runtime in backends:
            config = Config.of(backend)
            seen.add(config.backend_id)
            model = self.models.get(config.backend_id)
            if model is None:
                model = self.models[config.backend_id] = Model(config)
                if runtime is not None:
                    model.measured, model.measured_for = runtime.measured_bytes, runtime.measured_for
                self._save(model)
            model.config = config
            if model.estimate_for != config.signature:
                await self._estimate(model)
        for backend_id in set(self.models) - seen:
            model = self.models[backend_id]
            if not model.in_flight and not model.waiters:
                del self.models[backend_id]
                self._spawn(self._stop_process(model, "it is no longer a managed model of this node"))

    def _load_backends(self) -> list[tuple[Backend, ManagedRuntime | None]]:
        rows = Backend.objects.filter(managed=True, enabled=True, model__enabled=True, node=self.node)
        rows = rows.select_related("model").order_by("id")
        runtimes = {r.backend_id: r for r in ManagedRuntime.objects.filter(backend__in=rows)}
        return [(backend, runtimes.get(backend.id)) for backend in rows]

    async def _estimate(self, model: Model) -> None:
        config = model.config
        try:
            model.estimate = await asyncio.to_thread(
                estimate.estimate, config.gguf, config.options(), config.mmproj or None
            )
            model.estimate_error = ""
        except estimate.EstimateError as exc:
            model.estimate, model.estimate_error = None, str(exc)
        model.estimate_for = config.signature
        self._save(model)

    async def model(self, backend_id: int) -> Model | None:
        if backend_id not in self.models:
            await self.refresh()
        return self.models.get(backend_id)

    # --- the budget ---

    def used(self) -> int:
        return sum(m.need for m in self.models.values() if m.state in ACTIVE)

    def budget_snapshot(self) -> dict[str, Any]:
        total = self.budget.total if self.budget else 0
        used = self.used()
        return {
            "node": self.node,
            "total_bytes": total,
            "used_bytes": used,
            "free_bytes": total - used,
            "source": self.budget.source if self.budget else "",
        }

    def _never_fits(self, model: Model) -> Refusal | None:
        assert self.budget is not None
        if model.estimate is None:
            return Refusal(503, "model_unreadable", f"`{model.config.model_id}`: {model.estimate_error}")
        figures = (
            model.estimate.describe() if model.need == model.estimate.total else f"{model.need // MIB} MiB (measured)"
        )
        if model.need > self.budget.total:
            return Refusal(
                503, "model_too_large",
                f"`{model.config.model_id}` needs {figures}, more than node {self.node}'s whole budget of "
                f"{self.budget.total // MIB} MiB ({self.budget.source})",
            )  # fmt: skip
        pinned = sum(m.need for m in self.models.values() if m.config.pinned and m.state in ACTIVE and m is not model)
        if model.need > self.budget.total - pinned:
            return Refusal(
                503, "model_too_large",
                f"`{model.config.model_id}` needs {figures}; node {self.node}'s budget is {self.budget.total // MIB} MiB "
                f"and its pinned models hold {pinned // MIB} MiB of it",
            )  # fmt: skip
        return None

    # --- what gateway processes ask ---

    async def acquire(self, conn: Connection, backend_id: int, lease: str) -> dict[str, Any]:
        model = await self.model(backend_id)
        if model is None:
            raise Refusal(503, "model_not_managed", f"backend {backend_id} is not a managed model of node {self.node}")
        if self._shed(model):
            raise self._shedding()
        ready_on_arrival = model.state == ModelState.READY
        if ready_on_arrival and self._admits(model):
            self._grant(model, conn, lease)
            return {"ok": True, "port": model.port, "waited_ms": 0.0, "cold": False}
        now = time.monotonic()
        if model.state == ModelState.FAILED and now < model.failed_until:
            raise Refusal(503, "model_load_failed", model.last_error, math.ceil(model.failed_until - now))
        if (refused := self._never_fits(model)) is not None:
            raise refused
        if len(model.waiters) >= settings.MODEL_QUEUE_LENGTH:
            raise Refusal(
                429, "model_queue_full",
                f"{len(model.waiters)} requests already wait for `{model.config.model_id}` to load",
                model.retry_after(),
            )  # fmt: skip
        waiter = Waiter(lease, conn, asyncio.current_task(), asyncio.get_running_loop().create_future())
        model.waiters[lease] = waiter
        conn.waiting[lease] = model
        self._touch(model)
        self.kick()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), settings.MODEL_LOAD_TIMEOUT)
        except TimeoutError:
            if lease not in conn.leases:  # not granted in the same instant
                waited_for = "a turn on the hot device" if ready_on_arrival else "the model to load"
                raise Refusal(
                    503,
                    "model_load_timeout",
                    f"`{model.config.model_id}`: waited MODEL_LOAD_TIMEOUT ({settings.MODEL_LOAD_TIMEOUT:g} s) for "
                    f"{waited_for}",
                    model.retry_after(),
                ) from None
        finally:
            self._leave_queue(model, lease)
        return {
            "ok": True,
            "port": model.port,
            "waited_ms": round((time.monotonic() - waiter.since) * 1000, 1),
            "cold": not ready_on_arrival,  # it waited for a load, not only for its turn under a hot device
        }

    def _leave_queue(self, model: Model, lease: str) -> None:
        waiter = model.waiters.pop(lease, None)
        if waiter is not None:
            waiter.conn.waiting.pop(lease, None)
            self._touch(model)

    def _grant(self, model: Model, conn: Connection, lease: str) -> None:
        model.in_flight[lease] = conn
        model.lease_started[lease] = time.monotonic()
        conn.leases[lease] = model
        self._tell_energy(model)
        model.last_used = timezone.now()
        if model.idle_timer is not None:
            model.idle_timer.cancel()
            model.idle_timer, model.unload_at = None, None
        self._touch(model)

    def release(self, conn: Connection, lease: str) -> None:
        """End a lease in flight, or leave the queue (the waiting request's task is cancelled)."""
        model = conn.leases.pop(lease, None)
        if model is not None:
            model.in_flight.pop(lease, None)
            started = model.lease_started.pop(lease, None)
            self._tell_energy(model, lease, started)
            model.last_used = timezone.now()
            self._touch(model)
            if not model.in_flight:
                self._idle(model)
            if model.waiters and model.state == ModelState.READY:
                self._grant_waiters(model)  # under a soft admission limit, the next one's turn
            return
        model = conn.waiting.pop(lease, None)
        if model is not None:
            waiter = model.waiters.get(lease)
            if waiter is not None and waiter.task is not None:
                waiter.task.cancel()
            self._leave_queue(model, lease)

    def _idle(self, model: Model) -> None:
        """A model with nothing in flight: it may be evicted now, and unloads after its TTL."""
        if model.state == ModelState.READY and model.pid is not None:
            self._spawn(self._measure(model))
            if model.idle_timer is not None:
                model.idle_timer.cancel()
            if not model.waiters and model.config.idle_ttl > 0 and not model.config.pinned:
                ttl = model.config.idle_ttl
                model.unload_at = timezone.now() + timedelta(seconds=ttl)
                model.idle_timer = asyncio.get_running_loop().call_later(ttl, self._idle_expired, model)
        self.kick()

    def _idle_expired(self, model: Model) -> None:
        model.idle_timer, model.unload_at = None, None
        if model.state == ModelState.READY and not model.in_flight and not model.waiters:
            self._spawn(self._stop_process(model, f"idle for {model.config.idle_ttl:g} s"))

    # --- energy and admission (the node's sampler tells the device's state and is told the requests) ---

    def generating(self) -> int:
        """Generation requests in flight on the node (embeddings are not shares of the board's energy)."""
        return sum(len(m.in_flight) for m in self.models.values() if not m.config.embeddings)

    def _tell_energy(self, model: Model, ended: str | None = None, started: float | None = None) -> None:
        if model.config.embeddings:
            return
        now = time.monotonic()
        messages = [{"op": "in_flight", "n": self.generating(), "at": now}]
        if ended is not None and started is not None:
            messages.append({"op": "lease_ended", "lease": ended, "model": model.config.model_id, "start": started,
                             "end": now})  # fmt: skip
        for conn in self.connections:
            if conn.energy:
                for message in messages:
                    conn.send(message)

    def _shedding(self) -> Refusal:
        a = self.admission
        return Refusal(503, a.code or OVERHEATED, f"The device is shedding load: {a.reason}", a.retry_after)

    def _shed(self, model: Model) -> bool:
        return self.admission.state == HARD and not model.config.embeddings

    def _admits(self, model: Model) -> bool:
        """Whether a request may start now: under a soft limit, one generation at a time per model."""
        return self.admission.state != SOFT or model.config.embeddings or not model.in_flight

    def set_admission(self, admission: Decision) -> None:
        if admission == self.admission:
            return
        logger.info("supervisor: admission %s (%s)", admission.state, admission.reason or "within limits")
        self.admission = admission
        for model in self.models.values():
            if not model.waiters:
                continue
            if self._shed(model):
                self._refuse_waiters(model, self._shedding())
            elif model.state == ModelState.READY:
                self._grant_waiters(model)

    # --- what operators ask ---

    async def load(self, backend_id: int, wait: bool) -> dict[str, Any]:
        model = await self._operated(backend_id)
        if model.state == ModelState.FAILED:
            model.failed_until = 0.0
        if (refused := self._never_fits(model)) is not None:
            raise refused
        if model.state != ModelState.READY:
            if model.state in (ModelState.STOPPED, ModelState.FAILED, ModelState.STOPPING):
                model.wanted_since = model.wanted_since or time.monotonic()
            self.kick()
            if wait:
                future = asyncio.get_running_loop().create_future()
                model.watchers.append(future)
                try:
                    await asyncio.wait_for(asyncio.shield(future), settings.MODEL_LOAD_TIMEOUT)
                except TimeoutError:
                    raise Refusal(503, "model_load_timeout", f"`{model.config.model_id}` is not ready yet") from None
        return {"ok": True, "model": model.snapshot(self.node)}

    async def unload(self, backend_id: int) -> dict[str, Any]:
        """Stop a model now; a model with requests in flight is refused (409), never cut off."""
        model = await self._operated(backend_id)
        if model.in_flight:
            raise Refusal(
                409, "model_busy",
                f"`{model.config.model_id}` has {len(model.in_flight)} request(s) in flight: unload it when they end",
                5,
            )  # fmt: skip
        model.wanted_since = None
        if model.state == ModelState.FAILED:
            self._set_state(model, ModelState.STOPPED)
        self._refuse_waiters(
            model, Refusal(503, "model_unloaded", f"`{model.config.model_id}` was unloaded by an operator", 1)
        )
        await self._stop_process(model, "an operator unloaded it")
        return {"ok": True, "model": model.snapshot(self.node)}

    async def restart(self, backend_id: int, wait: bool) -> dict[str, Any]:
        await self.unload(backend_id)
        return await self.load(backend_id, wait)

    async def _operated(self, backend_id: int) -> Model:
        await self.refresh()  # an operator expects the admin's latest edits to apply
        model = self.models.get(backend_id)
        if model is None:
            raise Refusal(404, "model_not_managed", f"backend {backend_id} is not a managed model of node {self.node}")
        return model

    def status(self) -> dict[str, Any]:
        return {
            "ok": True,
            "models": [m.snapshot(self.node) for m in self.models.values()],
            "budget": self.budget_snapshot(),
        }

    # --- scheduling loads: one decision at a time, oldest waiter first ---

    def kick(self) -> None:
        if self.stopping:
            return
        if self.scheduling is None or self.scheduling.done():
            self.scheduling = self._spawn(self._schedule())
        else:
            self.reschedule = True

    async def _schedule(self) -> None:
        while True:
            self.reschedule = False
            await self._schedule_once()
            if not self.reschedule:
                return

    async def _schedule_once(self) -> None:
        now = time.monotonic()
        pending = [
            m
            for m in self.models.values()
            if (m.waiters or m.wanted_since is not None)
            and (m.state == ModelState.STOPPED or (m.state == ModelState.FAILED and now >= m.failed_until))
        ]
        for model in sorted(pending, key=Model.first_wait):
            refused = self._never_fits(model)
            if refused is not None:
                self._refuse_waiters(model, refused)
                model.wanted_since = None
                continue
            victims = self._victims(model)
            if victims is None:
                return  # the oldest waiter waits for requests in flight to end; nothing overtakes it
            if victims:
                await asyncio.gather(
                    *(self._stop_process(v, f"evicted for `{model.config.model_id}`") for v in victims)
                )
                if model.state != ModelState.STOPPED and model.state != ModelState.FAILED:
                    continue
            if not model.waiters and model.wanted_since is None:
                continue  # everyone left while memory was made
            if self._victims(model) != []:
                self.reschedule = True  # something started meanwhile: decide again
                return
            self._start(model)

    def _victims(self, model: Model) -> list[Model] | None:
        """Idle, unpinned models to stop (least recently used first) so that `model` fits; None when even all of
        them are not enough (the rest is busy, starting or stopping)."""
        assert self.budget is not None
        free = self.budget.total - self.used()
        if model.need <= free:
            return []
        idle = [
            m
            for m in self.models.values()
            if m.state == ModelState.READY
            and not m.in_flight
            and not m.waiters
            and not m.config.pinned
            and m is not model
        ]
        victims = []
        for victim in sorted(idle, key=lambda m: m.last_used or m.since):
            victims.append(victim)
            free += victim.need
            if model.need <= free:
                return victims
        return None

    # --- processes ---

    def _start(self, model: Model) -> None:
        model.wanted_since = None
        model.exit_code = None
        model.device_bytes = None
        model.last_error = ""
        model.port = llama.free_port()
        model.exited = asyncio.Event()
        self._set_state(model, ModelState.STARTING)
        self._spawn(self._run(model))

    async def _run(self, model: Model) -> None:
        """One llama-server from start to exit."""
        started = time.monotonic()
        config = model.config
        try:
            command = await asyncio.to_thread(config.command, model.port)  # type: ignore[arg-type]
            log = self._open_log(model, command)
            try:
                process = await asyncio.create_subprocess_exec(
                    *command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=llama.die_with_parent, start_new_session=True,
                )  # fmt: skip
            finally:
                log.close()
        except (OSError, llama.LlamaError) as exc:
            self._fail(model, None, f"cannot start llama-server for `{config.model_id}`: {exc}")
            model.exited.set()
            return
        spawned = time.monotonic()
        model.process, model.pid = process, process.pid
        self._save(model)
        exit_code = asyncio.ensure_future(process.wait())
        ready = await self._wait_ready(model, exit_code, started + settings.MODEL_LOAD_TIMEOUT)
        if ready and model.state == ModelState.STARTING:
            # llama-server's own load, from exec to /health 200: what a request waits beyond it is the gateway's.
            model.load_seconds = round(time.monotonic() - spawned, 3)
            self._set_state(model, ModelState.READY)
            self._grant_waiters(model)
            await self._measure(model)
        elif not exit_code.done() and model.state == ModelState.STARTING:
            # Stopped before it is marked failed: a failed model holds no process and no memory of the budget.
            await self._terminate(process)
            await asyncio.wait([exit_code])
            if model.state == ModelState.STARTING:
                self._fail(
                    model,
                    None,
                    f"llama-server for `{config.model_id}` was not ready within {settings.MODEL_LOAD_TIMEOUT:g} s",
                )
        code = await exit_code
        self._exited(model, code)

    def _open_log(self, model: Model, command: list[str]) -> Any:
        folder = settings.VAR_DIR / "llama"
        folder.mkdir(parents=True, exist_ok=True)
        model.log_path = folder / f"{model.config.model_id.replace('/', '_')}.log"
        log = open(model.log_path, "ab")  # noqa: SIM115 (handed to the child, closed here once it has it)
        model.log_offset = log.tell()
        log.write(f"==== {timezone.now().isoformat()} supervisor: {shlex.join(command)}\n".encode())
        log.flush()
        return log

    async def _wait_ready(self, model: Model, exit_code: asyncio.Future, deadline: float) -> bool:
        """Ready means GET /health answers 200 (it answers 503 while the model loads)."""
        target = upstream.Target(f"http://{_loopback(settings.LLAMA_HOST)}:{model.port}", model.config.api_key)
        while time.monotonic() < deadline and model.state == ModelState.STARTING:
            with contextlib.suppress(upstream.UpstreamError):
                status, _ = await upstream.get(target, "/health", 2.0)
                if status == 200:
                    return True
            await asyncio.wait([exit_code], timeout=READY_POLL)
            if exit_code.done():
                return False
        return False

    def _grant_waiters(self, model: Model) -> None:
        for lease, waiter in list(model.waiters.items()):
            if not waiter.future.done():
                if not self._admits(model):
                    break  # a hot device: one at a time, the others keep their place in the queue
                self._grant(model, waiter.conn, lease)
                waiter.conn.waiting.pop(lease, None)
                waiter.future.set_result(None)
            model.waiters.pop(lease, None)
        for future in model.watchers:
            if not future.done():
                future.set_result(None)
        model.watchers.clear()
        if not model.in_flight:
            self._idle(model)
        self._touch(model)

    def _refuse_waiters(self, model: Model, refusal: Refusal) -> None:
        for waiter in model.waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(refusal)
        for future in model.watchers:
            if not future.done():
                future.set_exception(refusal)
        model.watchers.clear()

    def _fail(self, model: Model, code: int | None, message: str) -> None:
        model.exit_code = code
        model.last_error = message
        model.failed_until = time.monotonic() + settings.MODEL_FAILED_RETRY_SECONDS
        self._set_state(model, ModelState.FAILED)
        self._refuse_waiters(model, Refusal(503, "model_load_failed", message, settings.MODEL_FAILED_RETRY_SECONDS))
        logger.warning("%s", message)

    def _exited(self, model: Model, code: int) -> None:
        model.process, model.pid, model.port = None, None, None
        if model.idle_timer is not None:
            model.idle_timer.cancel()
            model.idle_timer, model.unload_at = None, None
        if model.state == ModelState.STARTING:
            self._fail(
                model, code,
                f"llama-server for `{model.config.model_id}` exited with code {code} while loading; "
                f"last lines of {model.log_path}:\n{self._log_tail(model)}",
            )  # fmt: skip
        elif model.state == ModelState.READY:
            model.exit_code = code
            model.last_error = f"llama-server exited unexpectedly with code {code}"
            logger.warning("`%s`: %s", model.config.model_id, model.last_error)
            self._set_state(model, ModelState.STOPPED)
        elif model.state == ModelState.STOPPING:
            model.exit_code = code
            self._set_state(model, ModelState.STOPPED)
        else:
            self._save(model)
        model.exited.set()
        self.kick()  # memory was freed; waiters of a crashed model start it again

    def _log_tail(self, model: Model) -> str:
        if model.log_path is None:
            return ""
        with open(model.log_path, "rb") as log:
            log.seek(model.log_offset)
            lines = log.read().decode(errors="replace").splitlines()[1:]
        return "\n".join(lines[-LOG_TAIL_LINES:])

    async def _measure(self, model: Model) -> None:
        """Record what the ready process uses (the largest figure seen), to be preferred over the estimate:
        its RSS, plus the device buffers its log reported when it loaded."""
        if model.pid is None or model.log_path is None:
            return
        if model.device_bytes is None:
            model.device_bytes = await asyncio.to_thread(self._device_buffers, model)
        rss = await asyncio.to_thread(memory.process_rss, model.pid)
        if rss is None:
            return
        used = rss + model.device_bytes
        signature = model.config.signature
        if model.measured_for != signature or used > (model.measured or 0):
            model.measured, model.measured_for = used, signature
            self._touch(model)

    def _device_buffers(self, model: Model) -> int:
        assert model.log_path is not None
        with open(model.log_path, "rb") as log:
            log.seek(model.log_offset)
            buffers = memory.parse_buffers(log.read().decode(errors="replace"))
        return buffers.device if buffers else 0

    async def _stop_process(self, model: Model, reason: str) -> None:
        """SIGTERM, then SIGKILL after MODEL_STOP_GRACE; returns once the process has exited."""
        if model.state not in (ModelState.STARTING, ModelState.READY, ModelState.STOPPING):
            return
        if model.state != ModelState.STOPPING:
            logger.info("stopping `%s`: %s", model.config.model_id, reason)
            self._set_state(model, ModelState.STOPPING)
            if model.process is not None:
                self._spawn(self._terminate(model.process))
        await model.exited.wait()

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), settings.MODEL_STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    # --- recording and pushing states ---

    def _set_state(self, model: Model, state: str) -> None:
        model.state = state
        model.since = timezone.now()
        self._save(model)

    def _touch(self, model: Model) -> None:
        """Counters changed: written and pushed with the next flush."""
        self.dirty.add(model.config.backend_id)

    def _save(self, model: Model) -> None:
        """A transition: written and pushed now."""
        self.dirty.discard(model.config.backend_id)
        snapshot = model.snapshot(self.node)
        self._push(snapshot)
        self.db.submit(self._write, [(model.config.backend_id, snapshot, model.measured_for)], self.budget_snapshot())

    async def _flush(self) -> None:
        rows = []
        for backend_id in list(self.dirty):
            if (model := self.models.get(backend_id)) is not None:
                snapshot = model.snapshot(self.node)
                self._push(snapshot)
                rows.append((backend_id, snapshot, model.measured_for))
        self.dirty.clear()
        await asyncio.get_running_loop().run_in_executor(self.db, self._write, rows, self.budget_snapshot())

    def _push(self, snapshot: dict[str, Any]) -> None:
        message = {"op": "state", "model": snapshot, "budget": self.budget_snapshot()}
        for conn in self.connections:
            conn.send(message)

    def _write(self, rows: list[tuple[int, dict[str, Any], str]], budget: dict[str, Any]) -> None:
        close_old_connections()
        try:
            for backend_id, snap, measured_for in rows:
                if not Backend.objects.filter(pk=backend_id).exists():
                    continue
                memory_ = snap["memory"]
                ManagedRuntime.objects.update_or_create(
                    backend_id=backend_id,
                    defaults={
                        "state": snap["state"], "since": _parse(snap["since"]), "pid": snap["pid"],
                        "port": snap["port"], "estimated_bytes": memory_["estimated_bytes"],
                        "estimate_detail": memory_["estimate"] or {}, "measured_bytes": memory_["measured_bytes"],
                        "measured_for": measured_for if memory_["measured_bytes"] else "",
                        "in_flight": snap["in_flight"], "waiting": snap["waiting"], "last_used": _parse(snap["last_used"]),
                        "unload_at": _parse(snap["unload_at"]), "last_error": snap["last_error"],
                        "exit_code": snap["exit_code"], "load_seconds": snap["load_seconds"],
                    },
                )  # fmt: skip
            Supervisor.objects.filter(node=self.node).update(
                heartbeat=timezone.now(), used_bytes=budget["used_bytes"], budget_bytes=budget["total_bytes"]
            )
        except DatabaseError:
            # The states are rewritten on the next change; a database outage must not stop the supervisor.
            logger.exception("supervisor: cannot record model states")

    async def _in_db(self, function: Callable[[], Any]) -> Any:
        def call() -> Any:
            close_old_connections()
            return function()

        return await asyncio.get_running_loop().run_in_executor(self.db, call)

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("supervisor task failed", exc_info=task.exception())

    # --- the protocol ---

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(writer)
        nonce = secrets.token_hex(16)
        conn.send({"op": "challenge", "nonce": nonce, "node": self.node})
        try:
            hello = await asyncio.wait_for(protocol.read(reader), protocol.HELLO_TIMEOUT)
            if not hello or hello.get("op") != "hello" or not protocol.token_matches(nonce, hello.get("token")):
                conn.send({"op": "error", "message": "bad token: is SECRET_KEY the same as the supervisor's?"})
                return
            self.connections.add(conn)
            conn.send({"op": "welcome", "node": self.node, **self.status()})
            while (message := await protocol.read(reader)) is not None:
                self.dispatch(conn, message)
        except (TimeoutError, ConnectionError, protocol.ProtocolError) as exc:
            logger.info("supervisor: dropping a connection: %s", exc)
        finally:
            self.connections.discard(conn)
            self._drop(conn)
            writer.close()

    def _drop(self, conn: Connection) -> None:
        """A gateway process went away: whatever it held or waited for is given back."""
        for lease in list(conn.leases) + list(conn.waiting):
            self.release(conn, lease)
        for task in conn.tasks:
            task.cancel()

    def dispatch(self, conn: Connection, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "release":
            self.release(conn, str(message.get("lease")))
            return
        if op == "subscribe_energy":
            conn.energy = True
            conn.send({"op": "in_flight", "n": self.generating(), "at": time.monotonic()})
            return
        if op == "admission":
            self.set_admission(Decision.of(message))
            return
        backend = message.get("backend")
        operations: dict[str, Callable[[], Any]] = {
            "acquire": lambda: self.acquire(conn, int(backend), str(message.get("lease"))),  # type: ignore[arg-type]
            "load": lambda: self.load(int(backend), bool(message.get("wait"))),  # type: ignore[arg-type]
            "unload": lambda: self.unload(int(backend)),  # type: ignore[arg-type]
            "restart": lambda: self.restart(int(backend), bool(message.get("wait"))),  # type: ignore[arg-type]
            "status": lambda: _ready(self.status()),
        }
        if op not in operations or (op != "status" and not isinstance(backend, int)):
            conn.send(
                {"op": "reply", "id": message.get("id"), **protocol.refusal(400, "bad_message", f"cannot {op!r}")}
            )
            return
        task = asyncio.ensure_future(self._answer(conn, message.get("id"), operations[op]))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _answer(self, conn: Connection, message_id: Any, operation: Callable[[], Any]) -> None:
        try:
            reply = await operation()
        except Refusal as refusal:
            reply = refusal.reply
        except asyncio.CancelledError:
            return  # the asker left (released its lease, or went away): nobody to answer
        conn.send({"op": "reply", "id": message_id, **reply})


async def _ready(value: dict[str, Any]) -> dict[str, Any]:
    return value


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _loopback(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _pid() -> int:
    return os.getpid()
