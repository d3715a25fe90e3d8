"""The state machine's decisions, step by step, for the cases the interleavings test checks only in general: memory
that shrinks, a model killed by the OOM killer, a backend that leaves the registry, an admission that goes stale, a
drain, and requests that leave their queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.lifecycle.config import Config, Setup
from gateway.lifecycle.estimate import Estimate
from gateway.lifecycle.machine import (
    Acquire,
    Cap,
    Drain,
    Drained,
    Exited,
    Heard,
    Machine,
    Measured,
    MemoryNow,
    Ready,
    Registry,
    Release,
    Reply,
    Rules,
    Spawn,
    Spawned,
    Terminate,
    Tick,
)
from gateway.node.admission import HARD, Decision

MIB = 1024 * 1024
RULES = Rules(load_timeout=30.0, queue_length=4, failed_retry=10.0, drain_grace=5.0, admission_stale=10.0)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def setup(backend: int, need_mb: int, ttl: float = 0.0) -> Setup:
    config = Config(backend, f"m{backend}", "chat", "/m.gguf", "", 1024, 1, None, (), 0, ttl, False)
    return Setup(backend, f"m{backend}", config, Estimate(weights=need_mb * MIB, kv=0, compute=0, prompt_cache=0))


class Node:
    """A machine driven by hand, with processes that do what the test says."""

    def __init__(self, *setups: Setup, budget_mb: int = 1000) -> None:
        self.now = 100.0
        self.machine = Machine(
            "n", Cap(budget_mb * MIB, True, "test"), RULES, wall=lambda t: EPOCH + timedelta(seconds=t)
        )
        self.effects: list[object] = []
        self.ids = iter(range(1, 10_000))
        self.step(MemoryNow(4 * budget_mb * MIB))
        self.step(Registry({s.backend_id: s for s in setups}))

    def step(self, event: object) -> list[object]:
        effects = self.machine.step(event, self.now)  # type: ignore[arg-type]
        self.effects += effects
        return effects

    def later(self, seconds: float) -> list[object]:
        self.now += seconds
        return self.step(Tick())

    def ask(self, backend: int, holder: int = 1) -> tuple[str, list[object]]:
        lease = f"r{next(self.ids)}.1"
        return lease, self.step(Acquire(holder, lease, backend, lease))

    def load(self, backend: int, holder: int = 1) -> str:
        """A request that loads the model and is granted; its lease."""
        lease, effects = self.ask(backend, holder)
        spawn = next(e for e in effects if isinstance(e, Spawn))
        self.step(Spawned(backend, spawn.generation, 1000 + backend, 9000 + backend, "k"))
        granted = self.step(Ready(backend, spawn.generation, 0.4))
        assert any(isinstance(e, Reply) and e.body.get("ok") for e in granted)
        return lease

    def state(self, backend: int) -> str:
        return self.machine.entries[backend].state


def replies(effects: list[object]) -> list[dict]:
    return [e.body for e in effects if isinstance(e, Reply)]


def test_idle_models_go_when_the_memory_available_shrinks_and_busy_ones_stay() -> None:
    node = Node(setup(1, 300), setup(2, 300))
    busy = node.load(1)
    idle = node.load(2)
    node.step(Release(1, idle))

    effects = node.step(MemoryNow(400 * MIB))  # something else took the memory: 600 MiB no longer fit

    assert node.state(2) == "stopping" and any(isinstance(e, Terminate) and e.backend == 2 for e in effects)
    assert node.state(1) == "ready" and busy in node.machine.entries[1].leases


def test_a_load_waits_while_the_memory_is_short_and_starts_once_it_is_back() -> None:
    node = Node(setup(1, 300), setup(2, 300))
    node.load(1)
    node.step(MemoryNow(500 * MIB))  # room for model 1 only; it is busy

    _, effects = node.ask(2)
    assert not any(isinstance(e, Spawn) for e in effects)
    assert node.machine.entries[2].waiters

    effects = node.step(MemoryNow(2000 * MIB))
    assert any(isinstance(e, Spawn) and e.backend == 2 for e in effects)


def test_an_oom_killed_model_is_recorded_budgeted_more_and_backs_off() -> None:
    node = Node(setup(1, 300))
    node.load(1)
    generation = node.machine.entries[1].generation
    node.step(Measured(1, generation, 350 * MIB))

    node.step(Exited(1, generation, -9, oom=True, peak=420 * MIB))

    entry = node.machine.entries[1]
    assert entry.state == "failed" and entry.failure_code == "model_oom_killed"
    assert "OOM killer" in entry.last_error and "420 MiB" in entry.last_error
    assert entry.need >= 420 * MIB * 1.25
    _, effects = node.ask(1)
    (refusal,) = replies(effects)
    assert (refusal["status"], refusal["code"]) == (503, "model_oom_killed") and refusal["retry_after"] >= 10
    # Killed again right after its next load: it waits twice as long.
    node.later(10)
    node.load(1)
    node.step(Exited(1, node.machine.entries[1].generation, -9, oom=True, peak=530 * MIB))
    assert node.machine.entries[1].failed_until - node.now == pytest.approx(20)


def test_a_backend_removed_from_the_registry_stays_on_the_books_until_its_process_exits() -> None:
    node = Node(setup(1, 300), setup(2, 300))
    lease = node.load(1)

    node.step(Registry({2: setup(2, 300)}))
    assert node.state(1) == "ready"  # busy: it finishes first
    assert node.machine.budget_snapshot().used_bytes == 300 * MIB

    effects = node.step(Release(1, lease))
    assert any(isinstance(e, Terminate) for e in effects) and node.state(1) == "stopping"
    assert node.machine.budget_snapshot().used_bytes == 300 * MIB  # still counted while its process runs

    node.step(Exited(1, node.machine.entries[1].generation, 0))
    assert 1 not in node.machine.entries and node.machine.budget_snapshot().used_bytes == 0


def test_a_hard_admission_that_is_not_repeated_goes_stale_and_admits_again() -> None:
    node = Node(setup(1, 300))
    node.load(1)
    node.step(Heard(Decision(HARD, "device_overheated", "cpu at 99 °C")))
    _, effects = node.ask(1)
    assert replies(effects)[0]["code"] == "device_overheated"

    node.later(RULES.admission_stale + 1)

    assert node.machine.stale and node.machine.admission.state == "normal"
    _, effects = node.ask(1)
    assert replies(effects)[0]["ok"]


def test_a_drain_grants_nothing_new_lets_leases_end_then_stops_everything() -> None:
    node = Node(setup(1, 300), setup(2, 300))
    lease = node.load(1)
    node.load(2)
    node.step(Release(1, f"r{2}.1"))

    node.step(Drain())
    _, effects = node.ask(1)
    assert replies(effects)[0]["code"] == "supervisor_draining"
    assert node.state(1) == "ready" and node.state(2) == "stopping"

    node.step(Release(1, lease))
    assert node.state(1) == "stopping"
    node.step(Exited(1, node.machine.entries[1].generation, 0))
    effects = node.step(Exited(2, node.machine.entries[2].generation, 0))
    assert any(isinstance(e, Drained) for e in effects)


def test_past_the_drain_grace_busy_models_are_stopped_too() -> None:
    node = Node(setup(1, 300))
    lease = node.load(1)
    node.step(Drain())

    effects = node.later(RULES.drain_grace)

    (stop,) = [e for e in effects if isinstance(e, Terminate)]
    assert stop.cuts == (lease,)


def test_a_request_that_leaves_its_queue_is_forgotten_at_once() -> None:
    node = Node(setup(1, 300))
    lease, _ = node.ask(1)
    assert node.machine.entries[1].waiters

    effects = node.step(Release(1, lease))

    assert not node.machine.entries[1].waiters and not replies(effects)
    generation = node.machine.entries[1].generation
    node.step(Spawned(1, generation, 1001, 9001, "k"))
    node.step(Ready(1, generation, 0.4))
    assert not node.machine.entries[1].leases  # the late load granted nothing to the request that left


def test_an_acquire_for_a_backend_not_read_yet_waits_for_the_registry() -> None:
    node = Node(setup(1, 300))
    lease, effects = node.ask(7)
    assert not replies(effects)

    effects = node.step(Registry({1: setup(1, 300), 7: setup(7, 100)}))

    assert any(isinstance(e, Spawn) and e.backend == 7 for e in effects)
    assert lease in node.machine.entries[7].waiters
