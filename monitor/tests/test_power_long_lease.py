"""A lease of any length gets its share: each lease in flight keeps the running sum at its start, with no window of
readings that a long one could outlast (the old sampler kept 900 s and gave such a lease nothing)."""

from __future__ import annotations

import pytest

from monitor.power import PowerSampler
from monitor.tests.energy import FakeBoard, sampled

WATTS = 10.0


def test_it_shares_a_lease_longer_than_the_old_window_with_the_ones_beside_it() -> None:
    board = FakeBoard(WATTS * 1000)
    power = PowerSampler(board, hz=10)
    sampled(power, board, until=1010.0)
    power.set_in_flight(1, at=1010.0)  # a long stream starts ...
    sampled(power, board, until=2000.0)
    power.set_in_flight(2, at=2000.0)  # ... a short request beside it, 990 s later ...
    sampled(power, board, until=2100.0)
    power.set_in_flight(1, at=2100.0)
    power.lease_ended("short", 2000.0, 2100.0)
    sampled(power, board, until=3510.0)
    power.set_in_flight(0, at=3510.0)  # ... and the stream ends after 2500 s
    power.lease_ended("long", 1010.0, 3510.0)
    sampled(power, board, until=3511.0)
    shares = dict(power.settled())
    # Alone but for the 100 s it shared half and half.
    assert shares["long"].gross_mj == pytest.approx(WATTS * (2500 - 100 / 2) * 1000)
    assert shares["short"].gross_mj == pytest.approx(WATTS * 100 / 2 * 1000)
    assert (shares["long"].seconds, shares["long"].measured_seconds) == pytest.approx((2500.0, 2500.0))
    assert power.settled() == []  # each given once


def test_it_gives_a_share_as_soon_as_the_readings_cover_the_end() -> None:
    board = FakeBoard(WATTS * 1000)
    power = PowerSampler(board, hz=10)
    sampled(power, board, until=1001.0)
    power.set_in_flight(1, at=1001.0)
    sampled(power, board, until=1003.0)
    power.set_in_flight(0, at=1003.25)
    power.lease_ended("request", 1001.0, 1003.25)
    assert power.settled(now=1003.3) == []  # the next reading is not taken yet
    sampled(power, board, until=1003.5)
    [(key, share)] = power.settled(now=1003.6)
    assert key == "request" and share.gross_mj == pytest.approx(WATTS * 2.25 * 1000)
