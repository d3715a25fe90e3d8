"""Which llama-server slot each request of a managed model goes to, and what each slot holds.

The supervisor names the slot of every lease it grants (the gateway sends it as `id_slot`): a conversation's next
turn goes back to the slot that read its last one, where the prompt's start is still in memory, and the supervisor
knows what every slot holds when the model is stopped, to save it to disk (gateway.lifecycle.kvcache). A slot holds
the prefix hashes of the last request it served (gateway.prefix), and whose they were.

Every decision is one call on one object (the supervisor's loop runs them one at a time): no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.prefix import Boundary, matched


@dataclass
class Slot:
    chain: tuple[str, ...] = ()  # prefix hashes of the last request it served, shortest first
    chars: int = 0  # that request's length in characters
    owner: str = ""  # the API key (or "*") of that request: its saved cache is deleted with the key
    leases: int = 0  # requests in it now
    used: int = 0  # when it was last chosen, as a count of choices: the least recently used is the oldest


@dataclass
class Slots:
    """The slots of one running llama-server (its --parallel)."""

    slots: list[Slot]
    leases: dict[str, int] = field(default_factory=dict)  # lease → its slot
    choices: int = 0

    @classmethod
    def of(cls, count: int) -> Slots:
        return cls([Slot() for _ in range(max(count, 1))])

    def choose(self, boundaries: Sequence[Boundary]) -> tuple[int, int]:
        """The slot for a request and how many characters of its prompt's start it holds: a free slot that holds
        the longest prefix, else the free slot least recently used (a busy one only when all are busy: llama-server
        queues the request there). The hashes name their key: a slot never matches another key's prompt."""
        free = [index for index, slot in enumerate(self.slots) if slot.leases == 0] or range(len(self.slots))
        best, longest = min(free, key=lambda i: (self.slots[i].leases, self.slots[i].used)), 0
        for index in free:
            hit = matched(self.slots[index].chain, boundaries)
            if hit is not None and hit.chars > longest:
                best, longest = index, hit.chars
        return best, longest

    def hold(self, index: int, lease: str, boundaries: Sequence[Boundary], owner: str) -> None:
        """The lease is in the slot, which now holds its request's prefixes."""
        slot = self.slots[index]
        self.choices += 1
        slot.leases += 1
        slot.used = self.choices
        if boundaries:
            slot.chain, slot.chars, slot.owner = tuple(b.hash for b in boundaries), boundaries[-1].chars, owner
        self.leases[lease] = index

    def release(self, lease: str) -> None:
        index = self.leases.pop(lease, None)
        if index is not None:
            self.slots[index].leases -= 1

    def held(self) -> list[tuple[int, Slot]]:
        """The slots that hold a prompt, for saving."""
        return [(index, slot) for index, slot in enumerate(self.slots) if slot.chain]
