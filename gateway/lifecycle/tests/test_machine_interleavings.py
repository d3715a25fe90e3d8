"""The supervisor's state machine under generated interleavings: acquires, releases in any order, clients and
gateway processes that leave, loads that succeed, fail, time out or are OOM-killed, TTLs, evictions, admission,
memory that shrinks, registry edits and a drain. After every step: no process is stopped while it holds a lease, no
lease outlives its holder, at most one process per model, a load is decided only within the budget of that moment,
every request is answered exactly once and no waiter outlives the load timeout."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.lifecycle.config import Config, Setup
from gateway.lifecycle.estimate import Estimate
from gateway.lifecycle.machine import (
    PENDING_LIMIT,
    Acquire,
    Admit,
    Cap,
    Disconnected,
    Drain,
    Exited,
    Heard,
    Machine,
    MemoryNow,
    Operate,
    Ready,
    Refresh,
    Registry,
    Release,
    Reply,
    Rules,
    Spawn,
    Spawned,
    Terminate,
    Tick,
)
from gateway.node.admission import HARD, NORMAL, SOFT, Decision
from gateway.node.snapshot import READY, STOPPED, STOPPING

MIB = 1024 * 1024
RULES = Rules(load_timeout=30.0, queue_length=3, failed_retry=10.0, drain_grace=5.0, admission_stale=10.0)
BUDGET = 1000 * MIB
NEEDS = {1: 400 * MIB, 2: 450 * MIB, 3: 300 * MIB, 4: 5000 * MIB}  # 4 never fits
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def setup(backend: int, ttl: float = 20.0, kind: str = "chat") -> Setup:
    config = Config(backend, f"model-{backend}", kind, "/models/m.gguf", "", 1024, 1, None, (), 0, ttl, False)
    return Setup(backend, f"model-{backend}", config, Estimate(weights=NEEDS[backend], kv=0, compute=0, prompt_cache=0))


SETUPS = {1: setup(1), 2: setup(2, ttl=0.0), 3: setup(3, kind="embedding"), 4: setup(4)}


@dataclass
class FakeProcess:
    generation: int
    spawned: bool = False
    ready: bool = False
    terminated: bool = False


@dataclass
class Call:
    holder: int
    message_id: int
    backend: int
    lease: str
    sent: float


class Interleavings(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.steps = 0
        self.soft_since_leases = False
        self.machine = Machine("node", Cap(BUDGET, True, "test"), RULES, wall=lambda t: EPOCH + timedelta(seconds=t))
        self.processes: dict[int, FakeProcess] = {}
        self.calls: dict[tuple[int, int], Call] = {}  # asked, not answered yet
        self.answered: set[tuple[int, int]] = set()
        self.leases: dict[str, tuple[int, int]] = {}  # granted lease → (holder, backend)
        self.connected = [1, 2]  # holders: one per connection; a gateway process that reconnects is a new one
        self.holder_ids = itertools.count(3)
        self.ids = itertools.count(1)
        self.registered = dict(SETUPS)
        self.feed(MemoryNow(BUDGET * 2))
        self.feed(Registry(dict(self.registered)))

    # --- driving the machine as the shell does ---

    def feed(self, event: object) -> None:
        self.steps += 1
        for effect in self.machine.step(event, self.now):  # type: ignore[arg-type]
            if isinstance(effect, Reply):
                self.reply(effect)
            elif isinstance(effect, Spawn):
                assert effect.backend not in self.processes, f"a second process for backend {effect.backend}"
                self.processes[effect.backend] = FakeProcess(effect.generation)
                # Every process that has not exited holds (or may hold) its memory, whatever its state.
                held = sum(self.machine.entries[backend].need for backend in self.processes)
                assert held <= self.machine.budget(), "a load beyond the budget of that moment"
            elif isinstance(effect, Terminate):
                entry = self.machine.entries[effect.backend]
                draining_past_grace = self.machine.drain_until is not None and self.now >= self.machine.drain_until
                assert not effect.cuts or draining_past_grace, f"backend {effect.backend} stopped with leases"
                assert not entry.leases or draining_past_grace
                self.processes[effect.backend].terminated = True
            elif isinstance(effect, Refresh):
                pass  # answered by the registry rules

    def reply(self, effect: Reply) -> None:
        key = (effect.holder, effect.message_id)
        assert key not in self.answered, f"{key} answered twice"
        self.answered.add(key)
        call = self.calls.pop(key, None)
        if call is not None and effect.body.get("ok"):
            assert effect.holder in self.connected, "a lease granted to a holder that has gone"
            self.leases[call.lease] = (call.holder, call.backend)

    # --- rules ---

    @rule(which=st.integers(0, 3), backend=st.sampled_from([1, 1, 2, 3, 4, 9]))
    def acquire(self, which: int, backend: int) -> None:
        if not self.connected:
            self.connected.append(next(self.holder_ids))
        holder = self.connected[which % len(self.connected)]
        message_id = next(self.ids)
        lease = f"req{message_id}.1"
        self.calls[(holder, message_id)] = Call(holder, message_id, backend, lease, self.now)
        self.feed(Acquire(holder, message_id, backend, lease))

    @rule(which=st.integers(0, 3), model=st.sampled_from(["external-chat", "external-embed"]))
    def an_external_backends_request_is_admitted(self, which: int, model: str) -> None:
        if not self.connected:
            self.connected.append(next(self.holder_ids))
        holder = self.connected[which % len(self.connected)]
        message_id = next(self.ids)
        lease = f"req{message_id}.1"
        self.calls[(holder, message_id)] = Call(holder, message_id, model, lease, self.now)  # type: ignore[arg-type]
        self.feed(Admit(holder, message_id, model, model == "external-chat", lease))

    @rule(data=st.data())
    def release_a_lease(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        lease = data.draw(st.sampled_from(sorted(self.leases)))
        holder, _ = self.leases.pop(lease)
        self.feed(Release(holder, lease))

    @rule(data=st.data())
    def a_waiting_client_leaves(self, data: st.DataObject) -> None:
        if not self.calls:
            return
        key = data.draw(st.sampled_from(sorted(self.calls)))
        call = self.calls.pop(key)
        self.answered.add(key)  # nobody waits for its answer any more; a late one is fine but not expected twice
        self.feed(Release(call.holder, call.lease))

    @rule(which=st.integers(0, 3))
    def a_gateway_process_goes_away(self, which: int) -> None:
        if not self.connected:
            return
        holder = self.connected.pop(which % len(self.connected))
        self.connected.append(next(self.holder_ids))  # it comes back, as a new connection
        for key in [k for k in self.calls if k[0] == holder]:
            del self.calls[key]
            self.answered.add(key)
        for lease in [lease for lease, (h, _) in self.leases.items() if h == holder]:
            del self.leases[lease]
        self.feed(Disconnected(holder))

    @rule(seconds=st.sampled_from([0.1, 1.0, 5.0, 11.0, 25.0, 31.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.feed(Tick())

    @rule(backend=st.sampled_from([1, 2, 3, None]))
    def a_process_loads(self, backend: int | None) -> None:
        """One model's process (or every one's) takes its next step: running, then ready."""
        for number, process in list(self.processes.items()):
            if backend not in (None, number) or process.ready:
                continue
            if not process.spawned:
                process.spawned = True
                self.feed(Spawned(number, process.generation, 100 + number, 9000 + number, "key"))
            elif number in self.processes:
                process.ready = True
                self.feed(Ready(number, process.generation, 0.5))

    @rule(backend=st.sampled_from([1, 2, 3]), how=st.sampled_from(["exits", "crashes", "oom"]))
    def a_process_exits(self, backend: int, how: str) -> None:
        process = self.processes.get(backend)
        if process is None or (how == "exits" and not process.terminated):
            return
        del self.processes[backend]
        for lease in [lease for lease, (_, b) in self.leases.items() if b == backend]:
            del self.leases[lease]  # its requests fail; their releases come later or never
        code = 0 if how == "exits" else -9
        self.feed(Exited(backend, process.generation, code, oom=how == "oom", peak=NEEDS[backend]))

    @rule(state=st.sampled_from([NORMAL, SOFT, HARD]))
    def the_sampler_decides(self, state: str) -> None:
        visitor = self.machine.visitors.get("external-chat")
        # Leases granted before a soft limit may run on under it; new ones come one at a time.
        self.soft_since_leases = state == SOFT and visitor is not None and len(visitor.leases) > 1
        self.feed(Heard(Decision(state, "device_overheated" if state == HARD else "", "hot")))

    @rule(available=st.sampled_from([200 * MIB, 700 * MIB, 2 * BUDGET]))
    def memory_changes(self, available: int) -> None:
        self.feed(MemoryNow(available))

    @rule(backend=st.sampled_from([1, 2]), present=st.booleans())
    def an_operator_edits_the_registry(self, backend: int, present: bool) -> None:
        if present:
            self.registered[backend] = SETUPS[backend]
        else:
            self.registered.pop(backend, None)
        self.feed(Registry(dict(self.registered)))

    @rule(backend=st.sampled_from([1, 2, 3]), operation=st.sampled_from(["load", "unload", "restart"]))
    def an_operator_operates(self, backend: int, operation: str) -> None:
        message_id = next(self.ids)
        self.feed(Operate(self.connected[0], message_id, operation, backend, wait=True))

    @precondition(lambda self: self.machine.drain_until is None and self.steps > 30)
    @rule()
    def sigterm(self) -> None:
        self.feed(Drain())

    # --- invariants ---

    @invariant()
    def no_lease_outlives_its_holder(self) -> None:
        held = [*self.machine.entries.values(), *self.machine.visitors.values()]
        for books in held:
            for lease, granted in books.leases.items():
                assert granted.holder in self.connected, f"{lease} held for a holder that has gone"
                assert lease in self.leases, f"{lease} is still held after its release"

    @invariant()
    def a_hot_device_admits_no_new_generation(self) -> None:
        visitor = self.machine.visitors.get("external-chat")
        if visitor is not None and self.machine.admission.state == SOFT:
            assert len(visitor.leases) <= 1 or self.soft_since_leases, "two generations at once under a soft limit"

    @invariant()
    def nothing_stopping_or_stopped_holds_a_lease(self) -> None:
        for entry in self.machine.entries.values():
            if entry.state not in (READY,):
                past_grace = self.machine.drain_until is not None and self.now >= self.machine.drain_until
                assert not entry.leases or (entry.state == STOPPING and past_grace), (entry.state, entry.leases)

    @invariant()
    def every_request_is_answered_or_waits_within_its_bound(self) -> None:
        for call in self.calls.values():
            books = self.machine.visitors.get(call.backend) if isinstance(call.backend, str) else None
            entry = books or self.machine.entries.get(call.backend)
            waiting = entry is not None and call.lease in entry.waiters
            pending = call.lease in self.machine.holders.get(call.holder, _NO_HOLDER).pending
            assert waiting or pending, (
                f"request {call.lease} for backend {call.backend} was neither answered nor queued"
            )
            limit = RULES.load_timeout if waiting else PENDING_LIMIT
            assert self.now - call.sent < limit, f"request {call.lease} waited beyond its bound"

    @invariant()
    def at_most_one_process_per_model(self) -> None:
        for backend, entry in self.machine.entries.items():
            alive = backend in self.processes
            assert entry.alive == alive, (backend, entry.state, entry.alive, alive)

    @invariant()
    def stopped_models_hold_no_process(self) -> None:
        for backend, entry in self.machine.entries.items():
            if entry.state == STOPPED:
                assert backend not in self.processes


class _NoHolder:
    pending: dict = {}


_NO_HOLDER = _NoHolder()

Interleavings.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_interleavings = Interleavings.TestCase
