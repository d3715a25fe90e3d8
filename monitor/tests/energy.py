"""Helpers for the power sampler tests: a sampler running over a fake tree, and waiting until it has sampled."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from monitor.power import PowerSampler, board_power_source

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


def now() -> tuple[float, float]:
    """The monotonic and the wall-clock time of one instant."""
    return time.monotonic(), time.time()


def written_energy(steps: list[tuple[float, float]], start: float, end: float) -> float:
    """mJ of a power held from each step's wall time (mW) to the next, between two wall-clock times."""
    total = 0.0
    for (since, mw), (until, _) in zip(steps, [*steps[1:], (end, 0.0)], strict=True):
        total += mw * max(min(until, end) - max(since, start), 0.0)
    return total
