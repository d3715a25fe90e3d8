"""Helpers for the power sampler tests: a sampler running over a fake tree, and waiting until it has sampled; a board
on a fake clock, read when the test says."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from monitor.power import PowerSampler, Reading, board_power_source

T = TypeVar("T")


@contextmanager
def running(sys: Path, hz: float = 10.0, **options: float) -> Iterator[PowerSampler]:
    """A sampler reading the fake tree's board total in its own thread, stopped on leaving."""
    source = board_power_source(sys, None, round(1000 / hz))
    assert source is not None, "the fake tree has no power rails"
    power = PowerSampler(source, hz, **options)
    power.start()
    try:
        yield power
    finally:
        power.stop()


def eventually(answer: Callable[[], T | None], timeout: float = 5.0) -> T:
    """The first answer that is not None: the sampler covers an instant only after its next reading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = answer()
        if result is not None:
            return result
        time.sleep(0.02)
    raise AssertionError(f"no answer within {timeout} s")


def written_energy(steps: list[tuple[float, float]], start: float, end: float) -> float:
    """mJ of a power held from each step's time (mW) to the next, between two times (all monotonic)."""
    total = 0.0
    for (since, mw), (until, _) in zip(steps, [*steps[1:], (end, 0.0)], strict=True):
        total += mw * max(min(until, end) - max(since, start), 0.0)
    return total


class FakeBoard:
    """A power source whose total (mW) the test sets, read on a fake monotonic clock the test moves: no thread, no
    sleep, any length of time."""

    name = "VDD_IN"

    def __init__(self, mw: float, at: float = 1000.0) -> None:
        self.mw = mw
        self.at = at

    def read(self) -> Reading:
        return Reading(at=self.at, mw=self.mw)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def sampled(power: PowerSampler, board: FakeBoard, until: float, every: float = 0.5) -> None:
    """Readings every `every` seconds of the fake clock (from its time now, if none was taken), up to `until`."""
    if power.ticks == 0:
        power.tick()
    while board.at < until:
        board.at = min(board.at + every, until)
        power.tick()
