"""The supervisor's slot book under generated interleavings: acquires of conversations (new ones and next turns),
grants and refusals, releases before and after their grant, gateway processes that leave, and processes that stop and
start again. After every step: each slot counts exactly the leases in it, no lease is held that was released, a
free slot is used before a busy one, and a next turn goes back to a free slot that holds its start."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.lifecycle.config import Config, Setup
from gateway.lifecycle.estimate import Estimate
from gateway.lifecycle.promptcache import PromptCaches
from gateway.prefix import Boundary

SLOTS = 3
BACKEND = 1
CONFIG = Config(BACKEND, "model", "chat", "/models/m.gguf", "", 4096, SLOTS, None, (), 0, 0.0, False)
SETUP = Setup(BACKEND, "model", CONFIG, Estimate(weights=1, kv=4096, compute=0, prompt_cache=0))


def talk(conversation: int, turns: int) -> list[list]:
    """A conversation's boundaries after `turns` turns: each turn adds a user and an assistant message."""
    return [[f"c{conversation}-m{n}", 100 * (n + 1)] for n in range(2 * turns + 1)]


class SlotBook(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.caches = PromptCaches.__new__(PromptCaches)  # no disk: nothing is saved or restored here
        self.caches.running, self.caches.asked_for, self.caches.replies = {}, {}, {}
        self.ids = itertools.count(1)
        self.asked: dict[str, tuple[int, int, list]] = {}  # lease → (holder, message id, boundaries)
        self.replied: set[str] = set()
        self.replying: list[str] = []
        self.released: set[str] = set()
        self.turns: dict[int, int] = {}
        self.start()

    def teardown(self) -> None:
        self.loop.close()

    def start(self) -> None:
        self.caches.ready(BACKEND, next(self.ids), 8080, "key", SETUP, "127.0.0.1")
        self.caches.running[BACKEND].saving = False

    @rule(holder=st.integers(1, 2), conversation=st.integers(1, 4))
    def acquire(self, holder: int, conversation: int) -> None:
        turns = self.turns[conversation] = self.turns.get(conversation, 0) + 1
        lease, message_id = f"lease-{next(self.ids)}", next(self.ids)
        boundaries = talk(conversation, turns)
        self.caches.asked(holder, message_id, BACKEND, lease, {"prefix": boundaries, "owner": "7"})
        self.asked[lease] = (holder, message_id, boundaries)

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), ok=st.booleans())
    def reply(self, data: st.DataObject, ok: bool) -> None:
        """The machine grants or refuses a waiting request; the grant's reply is sent once its slot is chosen (a
        task of its own: a release may come first)."""
        lease = data.draw(st.sampled_from(self.pending()))
        holder, message_id, _ = self.asked[lease]
        body = {"ok": True, "port": 8080} if ok else {"ok": False, "status": 503}
        answering = self.caches.answering(holder, message_id, body)
        self.replied.add(lease)
        if ok:
            assert answering == lease
            self.replying.append(lease)
        else:
            assert answering is None
            self.released.add(lease)

    @precondition(lambda self: self.replying)
    @rule(data=st.data())
    def send_grant(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.replying))
        self.replying.remove(lease)
        slots = self.caches.running[BACKEND].slots
        had_free = any(slot.leases == 0 for slot in slots.slots)
        hashes = {b[0] for b in self.asked[lease][2]}
        holding = [i for i, s in enumerate(slots.slots) if s.leases == 0 and s.chain and s.chain[-1] in hashes]
        reply = self.loop.run_until_complete(self.caches.granted(lease, {"ok": True, "port": 8080}))
        if lease in self.released:  # released before its grant was sent: nothing is held for it
            assert lease not in slots.leases
            return
        if had_free:
            assert slots.slots[reply["slot"]].leases == 1, "a busy slot was chosen while one was free"
        if holding:
            assert reply["slot"] in holding, "a next turn did not go back to the free slot holding its start"

    @precondition(lambda self: self.asked.keys() - self.released)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(sorted(self.asked.keys() - self.released)))
        self.caches.released(lease)
        self.released.add(lease)

    @rule(holder=st.integers(1, 2))
    def holder_leaves(self, holder: int) -> None:
        self.caches.disconnected(holder)
        self.released |= {lease for lease, (h, _, _) in self.asked.items() if h == holder}

    @rule()
    def restart(self) -> None:
        """The process stops and another starts; requests still waiting are granted by the new one."""
        self.caches.exited(BACKEND)
        self.start()

    def pending(self) -> list[str]:
        return sorted(lease for lease in self.asked if lease not in self.replied and lease not in self.released)

    @invariant()
    def each_slot_counts_its_leases(self) -> None:
        slots = self.caches.running[BACKEND].slots
        for index, slot in enumerate(slots.slots):
            assert slot.leases == sum(1 for held in slots.leases.values() if held == index) >= 0

    @invariant()
    def no_released_lease_is_held(self) -> None:
        slots = self.caches.running[BACKEND].slots
        assert not (slots.leases.keys() & self.released)
        assert slots.leases.keys() <= self.caches.asked_for.keys()


SlotBook.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_slot_book = SlotBook.TestCase


def test_a_next_turn_goes_back_to_its_slot() -> None:
    """The same, spelled out: two conversations in two slots; the first one's next turn finds its slot."""
    from gateway.lifecycle.slots import Slots

    slots = Slots.of(2)
    first = [Boundary(h, c) for h, c in talk(1, 1)]
    second = [Boundary(h, c) for h, c in talk(2, 1)]
    index, _ = slots.choose(first)
    slots.hold(index, "a", first, "7")
    other, _ = slots.choose(second)
    slots.hold(other, "b", second, "7")
    slots.release("a")
    slots.release("b")
    assert other != index
    assert slots.choose([Boundary(h, c) for h, c in talk(1, 2)]) == (index, 300)
