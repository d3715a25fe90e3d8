"""The scheduler's decisions, as plain functions of the books: which waiting model loads next, which idle models are
evicted to make room, and which have overstayed (idle TTL, memory that shrank). Nothing here changes anything."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.lifecycle.book import Entry
from gateway.node.snapshot import READY, STOPPING


def used(entries: Iterable[Entry]) -> int:
    """Memory the models on the books hold or may hold: every model that is starting, ready or stopping."""
    return sum(e.need for e in entries if e.active)


def evictable(entries: Iterable[Entry], but: Entry | None = None) -> list[Entry]:
    """Idle, unpinned ready models, least recently used first."""
    idle = [e for e in entries if e.state == READY and not e.leases and not e.waiters and not e.pinned and e is not but]
    return sorted(idle, key=lambda e: e.last_used if e.last_used is not None else e.since)


@dataclass(frozen=True)
class Plan:
    """For the oldest waiting model: start it now, stop `victims` first (it starts once they have exited), or
    wait (busy models hold the memory; nothing overtakes it)."""

    start: bool = False
    victims: tuple[Entry, ...] = ()


WAIT = Plan()


def plan(model: Entry, entries: list[Entry], budget: int) -> Plan:
    free = budget - used(entries)
    if model.need <= free:
        return Plan(start=True)
    freeing = sum(e.need for e in entries if e.state == STOPPING)
    if model.need <= free + freeing:
        return WAIT  # models already on their way out make the room
    victims = []
    for victim in evictable(entries, but=model):
        victims.append(victim)
        freeing += victim.need
        if model.need <= free + freeing:
            return Plan(victims=tuple(victims))
    return WAIT


def pending(entries: Iterable[Entry], now: float) -> list[Entry]:
    """Models wanted (by waiting requests or an operator) that may be started, oldest wait first."""
    return sorted((e for e in entries if e.wanted_now() and e.loadable(now)), key=Entry.first_wait)


def expired(entries: Iterable[Entry], now: float) -> list[Entry]:
    """Ready models idle for their TTL."""
    return [e for e in entries if (at := e.unload_at) is not None and at <= now]


def over_budget(entries: list[Entry], budget: int) -> tuple[list[Entry], int]:
    """When the memory available has shrunk below what the models hold: the idle ones to stop (least recently
    used first) and the bytes still over the budget after them (busy models are never stopped for memory)."""
    over = used(entries) - budget
    victims = []
    for victim in evictable(entries):
        if over <= 0:
            break
        victims.append(victim)
        over -= victim.need
    return victims, max(over, 0)
