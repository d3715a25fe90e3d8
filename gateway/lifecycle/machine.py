"""The supervisor's state machine: every event (a request for a model, a release, a process that became ready or
exited, a tick of the clock) is one step that decides and changes the books at once, and returns the effects for
the shell to carry out (replies, processes to start or stop, messages to the sampler).

No step awaits anything, so no decision is ever made on books that changed before it acted: an acquire is granted,
refused or queued in the step that receives it (where a release finds it); a model is marked stopping in the step
that decides to stop it, and nothing grants a stopping model a lease. Time is the monotonic clock the shell passes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from gateway.lifecycle import scheduler
from gateway.lifecycle.book import OOM_MARGIN, Entry, Holder, Lease, Pending, Visitor, Waiter, Watcher
from gateway.lifecycle.config import Setup
from gateway.node import protocol
from gateway.node.admission import HARD, NORMAL, OVERHEATED, SOFT, Decision
from gateway.node.snapshot import FAILED, READY, STARTING, STOPPED, STOPPING, Budget, Memory, ModelSnapshot

logger = logging.getLogger(__name__)
MIB = 1024 * 1024
PENDING_LIMIT = 5.0  # seconds an acquire for an unknown backend waits for the registry to be read
OOM_BACKOFF_CAP = 3600.0  # seconds: the longest a model killed again and again waits before its next load
OOM_FORGIVEN_AFTER = 600.0


# --- events ---


@dataclass(frozen=True)
class Acquire:
    holder: int
    message_id: Any
    backend: int
    lease: str


@dataclass(frozen=True)
class Admit:
    """A request for a model on an external backend of this node: a lease for admission and energy only."""

    holder: int
    message_id: Any
    model: str
    generation: bool
    lease: str


@dataclass(frozen=True)
class Release:
    holder: int
    lease: str


@dataclass(frozen=True)
class Disconnected:
    holder: int


@dataclass(frozen=True)
class Operate:
    holder: int
    message_id: Any
    operation: str  # load, unload, restart, status
    backend: int | None = None
    wait: bool = True


@dataclass(frozen=True)
class Registry:
    """The node's managed backends as just read: new ones appear, edits apply at their next start, missing ones
    are stopped once idle and leave the books once their process has exited."""

    setups: dict[int, Setup]


@dataclass(frozen=True)
class Spawned:
    backend: int
    generation: int
    pid: int
    port: int
    key: str


@dataclass(frozen=True)
class Ready:
    backend: int
    generation: int
    load_seconds: float


@dataclass(frozen=True)
class Exited:
    backend: int
    generation: int
    code: int | None
    oom: bool = False  # killed by the kernel's OOM killer
    peak: int | None = None
    log_tail: str = ""
    error: str = ""  # it could not even be started


@dataclass(frozen=True)
class Measured:
    backend: int
    generation: int
    peak: int  # VmHWM + device buffers


@dataclass(frozen=True)
class MemoryNow:
    """Memory the models could hold now: MemAvailable less the reserve, plus what our own processes hold."""

    available: int | None


@dataclass(frozen=True)
class Heard:
    decision: Decision


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class SavedCaches:
    """The prompt caches of a model saved on disk now (gateway.lifecycle.promptcache): shown with its state."""

    backend: int
    count: int
    bytes: int


@dataclass(frozen=True)
class Drain:
    pass


Event = (
    Acquire
    | Release
    | Disconnected
    | Operate
    | Registry
    | Spawned
    | Ready
    | Exited
    | Measured
    | MemoryNow
    | Heard
    | Tick
    | Drain
    | SavedCaches
)


# --- effects ---


@dataclass(frozen=True)
class Reply:
    holder: int
    message_id: Any
    body: dict[str, Any]


@dataclass(frozen=True)
class Spawn:
    backend: int
    generation: int
    setup: Setup


@dataclass(frozen=True)
class Terminate:
    backend: int
    generation: int
    reason: str
    # Holders (gateway processes) whose leases this stop cuts; only ever non-empty past the drain's grace.
    cuts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measure:
    backend: int
    generation: int


@dataclass(frozen=True)
class Tell:
    """A message for the sampler (requests in flight, leases ended)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class Refresh:
    pass


@dataclass(frozen=True)
class Drained:
    pass


Effect = Reply | Spawn | Terminate | Measure | Tell | Refresh | Drained


@dataclass(frozen=True)
class Rules:
    load_timeout: float
    queue_length: int
    failed_retry: float
    drain_grace: float
    admission_stale: float


@dataclass(frozen=True)
class Cap:
    """The configured budget: `total` bytes (None: none, only the memory available counts), whether the memory
    available caps it (unified memory: a Jetson, a CPU-only machine), and where it comes from."""

    total: int | None
    follows_memory: bool
    source: str


def wall_clock(moment: float) -> datetime:
    """A monotonic time as the wall-clock time it was (or will be)."""
    return timezone.now() + timedelta(seconds=moment - time.monotonic())


@dataclass
class Machine:
    node: str
    cap: Cap
    rules: Rules
    wall: Callable[[float], datetime] = wall_clock
    entries: dict[int, Entry] = field(default_factory=dict)
    visitors: dict[str, Visitor] = field(default_factory=dict)  # by model id
    holders: dict[int, Holder] = field(default_factory=dict)
    available: int | None = None
    admission: Decision = field(default_factory=Decision)
    heard_at: float = 0.0
    stale: bool = False
    drain_until: float | None = None
    drained: bool = False
    effects: list[Effect] = field(default_factory=list)
    changed: set[int] = field(default_factory=set)  # counters changed: written with the next flush
    transitions: set[int] = field(default_factory=set)  # states changed: written and pushed now
    forgotten: dict[int, ModelSnapshot] = field(default_factory=dict)  # left the books: their last state

    # --- the step ---

    def step(self, event: Event, now: float) -> list[Effect]:
        """Apply one event; return the effects to carry out, in order."""
        self.effects = []
        handler: Callable[[Any, float], None] = getattr(self, f"_on_{type(event).__name__.lower()}")
        handler(event, now)
        self._housekeep(now)
        effects, self.effects = self.effects, []
        return effects

    def next_deadline(self) -> float:
        """The earliest time something is due without a new event: a queued request's timeout, a load's deadline, an
        idle model's TTL, a failed model's retry, the admission going stale, the drain's end."""
        times = [self.drain_until or math.inf]
        if self.admission.state != NORMAL:
            times.append(self.heard_at + self.rules.admission_stale)
        for e in self.entries.values():
            times += [w.deadline for w in e.waiters.values()]
            times += [w.deadline for w in e.watchers]
            if e.state == STARTING:
                times.append(e.started_at + self.rules.load_timeout)
            if (at := e.unload_at) is not None:
                times.append(at)
            if e.state == FAILED and e.wanted_now():
                times.append(e.failed_until)
        for visitor in self.visitors.values():
            times += [w.deadline for w in visitor.waiters.values()]
        for holder in self.holders.values():
            times += [p.deadline for p in holder.pending.values()]
        return min(times)

    # --- what the shell asks ---

    def budget(self) -> int:
        total = self.cap.total
        if self.cap.follows_memory and self.available is not None:
            total = self.available if total is None else min(total, self.available)
        return total or 0

    def budget_snapshot(self) -> Budget:
        source = self.cap.source
        if self.cap.follows_memory and self.available is not None and self.budget() == self.available:
            source = f"{source}, capped by the memory available now" if self.cap.total is not None else source
        return Budget(self.node, self.budget(), scheduler.used(self.entries.values()), source)

    def snapshot(self, entry: Entry) -> ModelSnapshot:
        config, estimate = entry.setup.config, entry.setup.estimate
        memory = Memory(
            estimated_bytes=estimate.total if estimate else None,
            estimate=estimate.as_dict() if estimate else None,
            measured_bytes=entry.measured if entry.measured_valid() else None,
            peak_bytes=entry.peak,
            reserved_bytes=entry.need,
        )
        unload_at, wall = entry.unload_at, self.wall
        return ModelSnapshot(
            id=entry.model_id, backend=entry.backend_id, node=self.node,
            kind=config.kind if config else "chat", enabled=not entry.removed, state=entry.state,
            since=wall(entry.since), pid=entry.pid, port=entry.port, memory=memory, in_flight=len(entry.leases),
            waiting=len(entry.waiters), last_used=wall(entry.last_used) if entry.last_used is not None else None,
            unload_at=wall(unload_at) if unload_at is not None else None,
            idle_ttl=config.idle_ttl if config else 0.0, pinned=entry.pinned, load_seconds=entry.load_seconds,
            last_error=entry.last_error or entry.setup.problem, exit_code=entry.exit_code,
            oom_kills=entry.oom_kills, saved_caches=entry.saved_caches, saved_cache_bytes=entry.saved_cache_bytes,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        models = [self.snapshot(e).to_dict() for e in self.entries.values()]
        return {"ok": True, "models": models, "budget": self.budget_snapshot().to_dict()}

    def generating(self) -> int:
        """Generation requests in flight on the node (embeddings take no share of the board's energy)."""
        managed = sum(len(e.leases) for e in self.entries.values() if not e.embeddings)
        return managed + sum(len(v.leases) for v in self.visitors.values() if v.generation)

    def busy(self) -> int:
        """Everything the node is doing for its models: every lease, embeddings too, and every model loading (the
        sampler learns the board's idle power only when this is 0)."""
        managed = sum(len(e.leases) + (e.state == STARTING) for e in self.entries.values())
        return managed + sum(len(v.leases) for v in self.visitors.values())

    def in_flight_message(self, now: float) -> dict[str, Any]:
        return {"op": "in_flight", "n": self.generating(), "busy": self.busy(), "at": now}

    # --- requests for models ---

    def _on_acquire(self, event: Acquire, now: float) -> None:
        holder = self._holder(event.holder)
        if event.lease in holder.leases or event.lease in holder.waiting or event.lease in holder.pending:
            self._reply(event.holder, event.message_id, protocol.refusal(400, "bad_message", "that lease is in use"))
            return
        entry = self.entries.get(event.backend)
        if entry is None:
            holder.pending[event.lease] = Pending(
                event.holder, event.message_id, event.backend, event.lease, now + PENDING_LIMIT
            )
            self.effects.append(Refresh())
            return
        self._acquire(entry, event.holder, event.message_id, event.lease, now)

    def _acquire(self, entry: Entry, holder_id: int, message_id: Any, lease: str, now: float) -> None:
        refusal = self._refusal(entry, now)
        if refusal is not None:
            self._reply(holder_id, message_id, refusal)
            return
        ready_on_arrival = entry.state == READY
        if ready_on_arrival and self._admits(entry):
            self._grant(entry, holder_id, message_id, lease, now, now, cold=False)
            return
        if len(entry.waiters) >= self.rules.queue_length:
            self._reply(holder_id, message_id, protocol.refusal(
                429, "model_queue_full", f"{len(entry.waiters)} requests already wait for `{entry.model_id}`",
                self._retry_after(entry),
            ))  # fmt: skip
            return
        entry.waiters[lease] = Waiter(holder_id, message_id, now, now + self.rules.load_timeout, ready_on_arrival)
        self._holder(holder_id).waiting[lease] = entry.backend_id
        self.changed.add(entry.backend_id)

    def _refusal(self, entry: Entry, now: float) -> dict[str, Any] | None:
        """Why a request for the model is refused at once, if it is."""
        if self.drain_until is not None:
            return protocol.refusal(503, "supervisor_draining", f"node {self.node}'s supervisor is stopping", 5)
        if entry.removed:
            return protocol.refusal(
                503, "model_not_managed", f"`{entry.model_id}` is no longer a managed model of node {self.node}", 5
            )
        if entry.setup.problem:
            return protocol.refusal(503, entry.setup.problem_code, entry.setup.problem, 30)
        if self._shed(entry):
            a = self.admission
            return protocol.refusal(
                503, a.code or OVERHEATED, f"The device is shedding load: {a.reason}", a.retry_after
            )
        if entry.state == FAILED and now < entry.failed_until:
            return protocol.refusal(503, entry.failure_code, entry.last_error, math.ceil(entry.failed_until - now))
        return self._never_fits(entry)

    def _never_fits(self, entry: Entry) -> dict[str, Any] | None:
        budget, need = self.budget(), entry.need
        estimate = entry.setup.estimate
        figures = estimate.describe() if estimate and need == estimate.total else f"{need // MIB} MiB"
        if need > budget:
            source = self.budget_snapshot().source
            return protocol.refusal(503, "model_too_large", (
                f"`{entry.model_id}` needs {figures}, more than node {self.node}'s whole budget of "
                f"{budget // MIB} MiB ({source})"
            ), 30)  # fmt: skip
        pinned = sum(e.need for e in self.entries.values() if e.pinned and e.active and e is not entry)
        if need > budget - pinned:
            return protocol.refusal(503, "model_too_large", (
                f"`{entry.model_id}` needs {figures}; node {self.node}'s budget is {budget // MIB} MiB and its "
                f"pinned models hold {pinned // MIB} MiB of it"
            ), 30)  # fmt: skip
        return None

    def _grant(
        self, entry: Entry, holder_id: int, message_id: Any, lease: str, since: float, now: float, cold: bool
    ) -> None:
        entry.leases[lease] = Lease(holder_id, now)
        self._holder(holder_id).leases[lease] = entry.backend_id
        entry.last_used, entry.idle_since = now, None
        self.changed.add(entry.backend_id)
        self._tell_in_flight(now)
        self._reply(holder_id, message_id, {
            "ok": True, "port": entry.port, "key": entry.key, "waited_ms": round((now - since) * 1000, 1),
            "cold": cold,
        })  # fmt: skip

    def _on_admit(self, event: Admit, now: float) -> None:
        holder = self._holder(event.holder)
        if event.lease in holder.leases or event.lease in holder.waiting:
            self._reply(event.holder, event.message_id, protocol.refusal(400, "bad_message", "that lease is in use"))
            return
        visitor = self.visitors.setdefault(event.model, Visitor(event.generation))
        if self.admission.state == HARD and visitor.generation:
            a = self.admission
            self._reply(event.holder, event.message_id, protocol.refusal(
                503, a.code or OVERHEATED, f"The device is shedding load: {a.reason}", a.retry_after
            ))  # fmt: skip
        elif self._visitor_admits(visitor):
            self._grant_visitor(event.model, visitor, event.holder, event.message_id, event.lease, now, now)
        elif len(visitor.waiters) >= self.rules.queue_length:
            self._reply(event.holder, event.message_id, protocol.refusal(
                429, "model_queue_full", f"{len(visitor.waiters)} requests already wait for `{event.model}`", 5
            ))  # fmt: skip
        else:
            visitor.waiters[event.lease] = Waiter(
                event.holder, event.message_id, now, now + self.rules.load_timeout, True
            )
            holder.waiting[event.lease] = event.model

    def _visitor_admits(self, visitor: Visitor) -> bool:
        """Under a soft limit, one generation at a time per model, as for managed models."""
        return self.admission.state != SOFT or not visitor.generation or not visitor.leases

    def _grant_visitor(
        self, model: str, visitor: Visitor, holder_id: int, message_id: Any, lease: str, since: float, now: float
    ) -> None:
        visitor.leases[lease] = Lease(holder_id, now)
        self._holder(holder_id).leases[lease] = model
        self._tell_in_flight(now)
        self._reply(holder_id, message_id, {"ok": True, "waited_ms": round((now - since) * 1000, 1), "cold": False})

    def _grant_visitor_waiters(self, model: str, visitor: Visitor, now: float) -> None:
        for lease, waiter in list(visitor.waiters.items()):
            if not self._visitor_admits(visitor):
                break
            del visitor.waiters[lease]
            self._holder(waiter.holder).waiting.pop(lease, None)
            self._grant_visitor(model, visitor, waiter.holder, waiter.message_id, lease, waiter.since, now)

    def _release_visitor(self, model: str, lease: str, now: float) -> None:
        visitor = self.visitors.get(model)
        if visitor is None or (granted := visitor.leases.pop(lease, None)) is None:
            return
        self._tell_in_flight(now)
        if visitor.generation:
            self.effects.append(Tell({"op": "lease_ended", "lease": lease, "model": model, "start": granted.started,
                                      "end": now}))  # fmt: skip
        self._grant_visitor_waiters(model, visitor, now)

    def _on_release(self, event: Release, now: float) -> None:
        self._release(event.holder, event.lease, now)

    def _release(self, holder_id: int, lease: str, now: float) -> None:
        holder = self._holder(holder_id)
        # A request that leaves its queue is not answered: nobody waits for the answer any more.
        if holder.pending.pop(lease, None) is not None:
            return
        if (backend := holder.waiting.pop(lease, None)) is not None:
            if isinstance(backend, str):
                self.visitors[backend].waiters.pop(lease, None)
                return
            entry = self.entries.get(backend)
            if entry is not None and entry.waiters.pop(lease, None) is not None:
                self.changed.add(backend)
            return
        backend = holder.leases.pop(lease, None)
        if isinstance(backend, str):
            self._release_visitor(backend, lease, now)
            return
        entry = self.entries.get(backend) if backend is not None else None
        if entry is None or (granted := entry.leases.pop(lease, None)) is None:
            return
        entry.last_used = now
        self.changed.add(entry.backend_id)
        self._tell_in_flight(now)
        if not entry.embeddings:
            self.effects.append(Tell({"op": "lease_ended", "lease": lease, "model": entry.model_id,
                                      "start": granted.started, "end": now}))  # fmt: skip
        if not entry.leases:
            self._idle(entry, now)
        self._grant_waiters(entry, now)  # under a soft admission limit, the next one's turn

    def _on_disconnected(self, event: Disconnected, now: float) -> None:
        """A holder went away: whatever it held or waited for is given back."""
        holder = self.holders.get(event.holder)
        if holder is None:
            return
        for lease in [*holder.pending, *holder.waiting, *holder.leases]:
            self._release(event.holder, lease, now)
        for entry in self.entries.values():
            entry.watchers = [w for w in entry.watchers if w.holder != event.holder]
        del self.holders[event.holder]

    # --- what operators ask ---

    def _on_operate(self, event: Operate, now: float) -> None:
        if event.operation == "status":
            self._reply(event.holder, event.message_id, self.status())
            return
        entry = self.entries.get(event.backend) if event.backend is not None else None
        if entry is None or entry.removed:
            self._reply(event.holder, event.message_id, protocol.refusal(
                404, "model_not_managed", f"backend {event.backend} is not a managed model of node {self.node}"
            ))  # fmt: skip
            return
        if event.operation == "load":
            self._load(entry, event, now)
        elif event.operation in ("unload", "restart"):
            self._unload(entry, event, now)
        else:
            self._reply(event.holder, event.message_id, protocol.refusal(400, "bad_message", "unknown operation"))

    def _load(self, entry: Entry, event: Operate, now: float) -> None:
        if entry.state == FAILED:
            entry.failed_until = 0.0  # an operator's load is a retry now
        refusal = self._refusal(entry, now)
        if refusal is not None:
            self._reply(event.holder, event.message_id, refusal)
            return
        if entry.state == READY:
            self._reply_model(event.holder, event.message_id, entry)
            return
        entry.wanted = entry.wanted if entry.wanted is not None else now
        if event.wait:
            entry.watchers.append(Watcher(event.holder, event.message_id, READY, now + self.rules.load_timeout))
        else:
            self._reply_model(event.holder, event.message_id, entry)

    def _unload(self, entry: Entry, event: Operate, now: float) -> None:
        """Stop a model now (and, for a restart, load it again); one with requests in flight is refused (409)."""
        if entry.leases:
            self._reply(event.holder, event.message_id, protocol.refusal(
                409, "model_busy",
                f"`{entry.model_id}` has {len(entry.leases)} request(s) in flight: unload it when they end", 5,
            ))  # fmt: skip
            return
        restart = event.operation == "restart"
        if not restart:
            entry.wanted = None
            self._refuse_waiters(entry, protocol.refusal(
                503, "model_unloaded", f"`{entry.model_id}` was unloaded by an operator", 1
            ))  # fmt: skip
        if entry.state == FAILED:
            self._set_state(entry, STOPPED, now)
        if entry.state in (STARTING, READY):
            self._stop(entry, now, "an operator restarted it" if restart else "an operator unloaded it")
        if restart:
            entry.wanted = now
        if restart and not event.wait:
            self._reply_model(event.holder, event.message_id, entry)
        elif entry.state == STOPPING or restart:
            until = READY if restart else STOPPED
            entry.watchers.append(Watcher(event.holder, event.message_id, until, now + self.rules.load_timeout))
        else:
            self._reply_model(event.holder, event.message_id, entry)

    # --- the registry ---

    def _on_registry(self, event: Registry, now: float) -> None:
        for backend, setup in event.setups.items():
            entry = self.entries.get(backend)
            if entry is None:
                entry = self.entries[backend] = Entry(setup, since=now)
                entry.measured, entry.measured_for = setup.measured, setup.measured_for
                entry.wanted = now if entry.pinned else None
            elif entry.setup == setup and not entry.removed:
                continue
            else:
                entry.setup = setup  # a new config applies at the model's next start
                entry.removed = False
                if entry.pinned and not entry.active and entry.wanted is None and entry.state != FAILED:
                    entry.wanted = now
            self.transitions.add(backend)
        for backend in set(self.entries) - set(event.setups):
            entry = self.entries[backend]
            if not entry.removed:
                entry.removed = True
                entry.wanted = None
                self._refuse_waiters(entry, self._refusal(entry, now))  # type: ignore[arg-type]
                self.transitions.add(backend)
            if not entry.leases and entry.state in (STARTING, READY):
                self._stop(entry, now, "it is no longer a managed model of this node")
            self._forget_if_gone(entry)
        for holder in self.holders.values():
            for pending in list(holder.pending.values()):
                holder.pending.pop(pending.lease)
                if (entry := self.entries.get(pending.backend)) is not None:
                    self._acquire(entry, pending.holder, pending.message_id, pending.lease, now)
                else:
                    self._reply(pending.holder, pending.message_id, protocol.refusal(
                        503, "model_not_managed", f"backend {pending.backend} is not a managed model of node {self.node}",
                        5,
                    ))  # fmt: skip

    def _forget_if_gone(self, entry: Entry) -> None:
        if entry.removed and not entry.alive and not entry.active:
            del self.entries[entry.backend_id]
            self.forgotten[entry.backend_id] = self.snapshot(entry)
            self.transitions.discard(entry.backend_id)
            self.changed.discard(entry.backend_id)

    # --- processes ---

    def _on_spawned(self, event: Spawned, now: float) -> None:
        entry = self._current(event.backend, event.generation)
        if entry is not None:
            entry.pid, entry.port, entry.key = event.pid, event.port, event.key
            self.transitions.add(entry.backend_id)

    def _on_ready(self, event: Ready, now: float) -> None:
        entry = self._current(event.backend, event.generation)
        if entry is None or entry.state != STARTING:
            return  # it is being stopped meanwhile
        entry.load_seconds = event.load_seconds
        self._set_state(entry, READY, now)
        self._tell_in_flight(now)
        self.effects.append(Measure(entry.backend_id, entry.generation))
        self._grant_waiters(entry, now)
        if not entry.leases:
            self._idle(entry, now)

    def _on_measured(self, event: Measured, now: float) -> None:
        entry = self._current(event.backend, event.generation)
        if entry is None or entry.setup.config is None:
            return
        signature = entry.setup.config.signature
        if not entry.measured_valid():
            entry.measured, entry.measured_for = event.peak, signature  # as loaded, before any prompt was cached
        if event.peak > (entry.peak or 0):
            entry.peak = event.peak
        self.changed.add(entry.backend_id)

    def _on_exited(self, event: Exited, now: float) -> None:
        entry = self._current(event.backend, event.generation)
        if entry is None:
            return
        was = entry.state
        entry.alive = False
        entry.pid = entry.port = None
        entry.key = ""
        entry.idle_since = None
        entry.exit_code = event.code
        if event.peak:
            entry.peak = max(entry.peak or 0, event.peak)
        for lease, granted in list(entry.leases.items()):  # nothing is in flight on a process that is gone
            self._holder(granted.holder).leases.pop(lease, None)
        entry.leases.clear()
        if event.error:
            self._fail(entry, now, event.error)
        elif was == STARTING:
            self._fail(entry, now, (
                f"llama-server for `{entry.model_id}` exited with code {event.code} while loading; "
                f"its last lines:\n{event.log_tail}"
            ))  # fmt: skip
        elif was == READY and event.oom:
            self._oom_killed(entry, now)
        elif was == READY:
            entry.last_error = f"llama-server exited unexpectedly with code {event.code}"
            logger.warning("`%s`: %s", entry.model_id, entry.last_error)
            self._set_state(entry, STOPPED, now)
        elif entry.pending_failure:
            self._fail(entry, now, entry.pending_failure)
        else:
            self._set_state(entry, STOPPED, now)
        entry.pending_failure = ""
        self._tell_in_flight(now)
        for watcher in [w for w in entry.watchers if w.until == STOPPED]:
            entry.watchers.remove(watcher)
            self._reply_model(watcher.holder, watcher.message_id, entry)
        self._forget_if_gone(entry)

    def _oom_killed(self, entry: Entry, now: float) -> None:
        """Recorded as such, budgeted more next time, and retried later each time it happens again."""
        if now - entry.since > OOM_FORGIVEN_AFTER:
            entry.oom_kills = 0  # it ran for long between kills: back off from the start again
        entry.oom_kills += 1
        reached = max(entry.peak or 0, entry.need)
        entry.oom_floor = int(reached * OOM_MARGIN)
        backoff = min(self.rules.failed_retry * 2 ** (entry.oom_kills - 1), OOM_BACKOFF_CAP)
        self._fail(entry, now, (
            f"llama-server for `{entry.model_id}` was killed by the kernel's OOM killer while ready, holding "
            f"{reached // MIB} MiB (kill {entry.oom_kills}); it loads again in {backoff:g} s with "
            f"{entry.oom_floor // MIB} MiB reserved"
        ), "model_oom_killed", backoff)  # fmt: skip

    def _fail(self, entry: Entry, now: float, message: str, code: str = "model_load_failed",
              retry: float | None = None) -> None:  # fmt: skip
        entry.last_error, entry.failure_code = message, code
        entry.failed_until = now + (self.rules.failed_retry if retry is None else retry)
        entry.wanted = None
        self._set_state(entry, FAILED, now)
        refusal = protocol.refusal(503, code, message, math.ceil(entry.failed_until - now))
        self._refuse_waiters(entry, refusal)
        logger.warning("%s", message)

    def _start(self, entry: Entry, now: float) -> None:
        entry.generation += 1
        entry.alive = True
        entry.started_at = now
        entry.wanted = None
        entry.exit_code, entry.last_error, entry.pid, entry.port, entry.key = None, "", None, None, ""
        self._set_state(entry, STARTING, now)
        self.effects.append(Spawn(entry.backend_id, entry.generation, entry.setup))
        self._tell_in_flight(now)

    def _stop(self, entry: Entry, now: float, reason: str, failure: str = "") -> None:
        """Mark it stopping and have its process stopped; from here on nothing grants it a lease."""
        cuts = tuple(entry.leases)
        logger.info("stopping `%s`: %s", entry.model_id, reason)
        entry.pending_failure = failure
        self._set_state(entry, STOPPING, now)
        if entry.alive:
            self.effects.append(Terminate(entry.backend_id, entry.generation, reason, cuts))
        else:
            self._set_state(entry, STOPPED, now)

    # --- admission, memory, draining ---

    def _on_heard(self, event: Heard, now: float) -> None:
        self.heard_at = now
        self._admit(event.decision, stale=False)

    def _admit(self, decision: Decision, stale: bool) -> None:
        if decision == self.admission and stale == self.stale:
            return
        if stale:
            logger.warning(
                "supervisor: the sampler's admission (%s) went stale: admitting normally", self.admission.state
            )
        else:
            logger.info("supervisor: admission %s (%s)", decision.state, decision.reason or "within limits")
        self.admission, self.stale = decision, stale
        now = self.heard_at
        for model, visitor in self.visitors.items():
            if self.admission.state == HARD and visitor.generation:
                for lease in list(visitor.waiters):
                    self._drop_visitor_waiter(visitor, lease, protocol.refusal(
                        503, decision.code or OVERHEATED, f"The device is shedding load: {decision.reason}",
                        decision.retry_after,
                    ))  # fmt: skip
            else:
                self._grant_visitor_waiters(model, visitor, now)
        for entry in self.entries.values():
            if not entry.waiters:
                continue
            if self._shed(entry):
                self._refuse_waiters(entry, self._refusal(entry, now))  # type: ignore[arg-type]
            else:
                self._grant_waiters(entry, now)

    def _on_memorynow(self, event: MemoryNow, now: float) -> None:
        self.available = event.available

    def _on_savedcaches(self, event: SavedCaches, now: float) -> None:
        if (entry := self.entries.get(event.backend)) is not None:
            entry.saved_caches, entry.saved_cache_bytes = event.count, event.bytes
            self.changed.add(entry.backend_id)

    def _on_tick(self, event: Tick, now: float) -> None:
        pass  # everything due is done by _housekeep

    def _on_drain(self, event: Drain, now: float) -> None:
        """Grant nothing new; let the generations in flight finish (up to the grace), then stop every model."""
        if self.drain_until is not None:
            return
        self.drain_until = now + self.rules.drain_grace
        refusal = protocol.refusal(503, "supervisor_draining", f"node {self.node}'s supervisor is stopping", 5)
        for entry in self.entries.values():
            entry.wanted = None
            self._refuse_waiters(entry, refusal)
        for holder in self.holders.values():
            for pending in list(holder.pending.values()):
                holder.pending.pop(pending.lease)
                self._reply(pending.holder, pending.message_id, refusal)

    # --- what is due ---

    def _housekeep(self, now: float) -> None:
        self._time_out(now)
        if self.admission.state != NORMAL and now - self.heard_at > self.rules.admission_stale:
            self._admit(Decision(reason="stale: the sampler has not repeated its decision"), stale=True)
        for entry in scheduler.expired(self.entries.values(), now):
            self._stop(entry, now, f"idle for {entry.ttl:g} s")
        if self.drain_until is not None:
            self._drain(now)
            return
        self._make_room(now)
        self._schedule(now)

    def _time_out(self, now: float) -> None:
        for model, visitor in self.visitors.items():
            for lease in [lease for lease, waiter in visitor.waiters.items() if waiter.deadline <= now]:
                self._drop_visitor_waiter(visitor, lease, protocol.refusal(503, "model_load_timeout", (
                    f"`{model}`: waited MODEL_LOAD_TIMEOUT ({self.rules.load_timeout:g} s) for a turn on the hot device"
                ), 5))  # fmt: skip
        for entry in list(self.entries.values()):
            for lease, waiter in list(entry.waiters.items()):
                if waiter.deadline <= now:
                    waited_for = "a turn on the hot device" if waiter.ready_on_arrival else "the model to load"
                    self._drop_waiter(entry, lease, protocol.refusal(503, "model_load_timeout", (
                        f"`{entry.model_id}`: waited MODEL_LOAD_TIMEOUT ({self.rules.load_timeout:g} s) for "
                        f"{waited_for}"
                    ), self._retry_after(entry)))  # fmt: skip
            for watcher in [w for w in entry.watchers if w.deadline <= now]:
                entry.watchers.remove(watcher)
                self._reply(watcher.holder, watcher.message_id, protocol.refusal(
                    503, "model_load_timeout", f"`{entry.model_id}` is not {watcher.until} yet", self._retry_after(entry)
                ))  # fmt: skip
            if entry.state == STARTING and now - entry.started_at >= self.rules.load_timeout:
                # Stopped before it is marked failed: a failed model holds no process and no memory of the budget.
                self._stop(entry, now, "its load took too long", failure=(
                    f"llama-server for `{entry.model_id}` was not ready within {self.rules.load_timeout:g} s"
                ))  # fmt: skip
        for holder in self.holders.values():
            for pending in [p for p in holder.pending.values() if p.deadline <= now]:
                holder.pending.pop(pending.lease)
                self._reply(pending.holder, pending.message_id, protocol.refusal(
                    503, "supervisor_unavailable", "the supervisor could not read its registry", 5
                ))  # fmt: skip

    def _make_room(self, now: float) -> None:
        """The memory available shrank below what the models hold: idle ones go; busy ones are never stopped."""
        victims, still_over = scheduler.over_budget(list(self.entries.values()), self.budget())
        for victim in victims:
            self._stop(victim, now, f"the memory available shrank to {self.budget() // MIB} MiB")
        if still_over and victims:
            logger.warning("node %s: models in use hold %d MiB beyond the memory available", self.node,
                           still_over // MIB)  # fmt: skip

    def _schedule(self, now: float) -> None:
        """Load the model waited for longest, evicting idle models to make room; nothing overtakes it."""
        entries = list(self.entries.values())
        for entry in scheduler.pending(entries, now):
            refusal = self._never_fits(entry)
            if refusal is not None:
                entry.wanted = None
                self._refuse_waiters(entry, refusal)
                continue
            plan = scheduler.plan(entry, entries, self.budget())
            for victim in plan.victims:
                self._stop(victim, now, f"evicted for `{entry.model_id}`")
            if plan.start:
                self._start(entry, now)
                continue
            return

    def _drain(self, now: float) -> None:
        assert self.drain_until is not None
        past_grace = now >= self.drain_until
        for entry in self.entries.values():
            if entry.state in (STARTING, READY) and (not entry.leases or past_grace):
                self._stop(entry, now, "the supervisor is stopping")
        if not self.drained and not any(e.alive for e in self.entries.values()):
            self.drained = True
            self.effects.append(Drained())

    # --- small steps ---

    def _holder(self, holder_id: int) -> Holder:
        return self.holders.setdefault(holder_id, Holder())

    def _current(self, backend: int, generation: int) -> Entry | None:
        entry = self.entries.get(backend)
        return entry if entry is not None and entry.generation == generation and entry.alive else None

    def _set_state(self, entry: Entry, state: str, now: float) -> None:
        entry.state, entry.since = state, now
        self.transitions.add(entry.backend_id)

    def _idle(self, entry: Entry, now: float) -> None:
        """Nothing in flight: it may be evicted now, unloads after its TTL, and its memory is read again."""
        if entry.removed and entry.state == READY:
            self._stop(entry, now, "it is no longer a managed model of this node")
            return
        if entry.state == READY:
            entry.idle_since = now
            self.effects.append(Measure(entry.backend_id, entry.generation))

    def _shed(self, entry: Entry) -> bool:
        return self.admission.state == HARD and not entry.embeddings

    def _admits(self, entry: Entry) -> bool:
        """Whether a request may start now: under a soft limit, one generation at a time per model."""
        return self.admission.state != SOFT or entry.embeddings or not entry.leases

    def _grant_waiters(self, entry: Entry, now: float) -> None:
        if entry.state != READY or self.drain_until is not None:
            return
        for lease, waiter in list(entry.waiters.items()):
            if not self._admits(entry):
                break  # a hot device: one at a time, the others keep their place in the queue
            del entry.waiters[lease]
            self._holder(waiter.holder).waiting.pop(lease, None)
            self._grant(entry, waiter.holder, waiter.message_id, lease, waiter.since, now,
                        cold=not waiter.ready_on_arrival)  # fmt: skip
        for watcher in [w for w in entry.watchers if w.until == READY]:
            entry.watchers.remove(watcher)
            self._reply_model(watcher.holder, watcher.message_id, entry)

    def _refuse_waiters(self, entry: Entry, refusal: dict[str, Any]) -> None:
        for lease in list(entry.waiters):
            self._drop_waiter(entry, lease, refusal)
        for watcher in [w for w in entry.watchers if w.until == READY]:
            entry.watchers.remove(watcher)
            self._reply(watcher.holder, watcher.message_id, refusal)

    def _drop_visitor_waiter(self, visitor: Visitor, lease: str, refusal: dict[str, Any]) -> None:
        waiter = visitor.waiters.pop(lease)
        self._holder(waiter.holder).waiting.pop(lease, None)
        self._reply(waiter.holder, waiter.message_id, refusal)

    def _drop_waiter(self, entry: Entry, lease: str, refusal: dict[str, Any]) -> None:
        waiter = entry.waiters.pop(lease)
        self._holder(waiter.holder).waiting.pop(lease, None)
        self.changed.add(entry.backend_id)
        self._reply(waiter.holder, waiter.message_id, refusal)

    def _reply(self, holder: int, message_id: Any, body: dict[str, Any]) -> None:
        self.effects.append(Reply(holder, message_id, body))

    def _reply_model(self, holder: int, message_id: Any, entry: Entry) -> None:
        self._reply(holder, message_id, {"ok": True, "model": self.snapshot(entry).to_dict()})

    def _retry_after(self, entry: Entry) -> int:
        return max(1, math.ceil(entry.load_seconds or 5))

    def _tell_in_flight(self, now: float) -> None:
        self.effects.append(Tell(self.in_flight_message(now)))
