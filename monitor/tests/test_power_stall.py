"""Readings that stall lose no energy silently: a gap between readings is bridged in a straight line and left out of
the measured time, and a lease whose end the readings never reach is shared up to the last one after STALL_SECONDS,
saying how much of it was measured (the old sampler dropped such a lease after 120 s)."""

from __future__ import annotations

import pytest

from monitor.power import STALL_SECONDS, PowerSampler
from monitor.tests.energy import FakeBoard, sampled

WATTS = 10.0


def test_it_shares_a_lease_up_to_the_last_reading_once_they_have_stopped_for_long() -> None:
    board = FakeBoard(WATTS * 1000)
    power = PowerSampler(board, hz=10)
    sampled(power, board, until=1001.0)
    power.set_in_flight(1, at=1001.0)
    sampled(power, board, until=1031.0)  # the sensor stops answering 30 s into the request ...
    power.set_in_flight(0, at=1041.0)  # ... which ends 10 s later
    power.lease_ended("request", 1001.0, 1041.0)
    assert power.settled(now=1041.0 + STALL_SECONDS - 1) == []  # a reading may still come
    [(_, share)] = power.settled(now=1041.0 + STALL_SECONDS)
    assert share.gross_mj == pytest.approx(WATTS * 30 * 1000)
    assert (share.seconds, share.measured_seconds) == pytest.approx((40.0, 30.0))


def test_it_bridges_a_gap_between_readings_and_says_it_was_not_measured() -> None:
    board = FakeBoard(WATTS * 1000)
    power = PowerSampler(board, hz=10)
    sampled(power, board, until=1001.0)
    power.set_in_flight(1, at=1001.0)
    sampled(power, board, until=1011.0)
    board.at = 1211.0  # the sampler's thread stalled for 200 s: the next reading, the same power
    power.tick()
    sampled(power, board, until=1221.0)
    power.set_in_flight(0, at=1221.0)
    power.lease_ended("request", 1001.0, 1221.0)
    sampled(power, board, until=1222.0)
    [(_, share)] = power.settled(now=1222.0)
    assert share.gross_mj == pytest.approx(WATTS * 220 * 1000)
    assert (share.seconds, share.measured_seconds) == pytest.approx((220.0, 20.0))


def test_it_counts_a_lease_from_when_the_sampler_learned_of_it() -> None:
    # The sampler connected to its supervisor while a request ran: told one in flight, not since when.
    board = FakeBoard(WATTS * 1000)
    power = PowerSampler(board, hz=10)
    sampled(power, board, until=1100.0)
    power.set_in_flight(1, at=1100.0)
    sampled(power, board, until=1200.0)
    power.set_in_flight(0, at=1200.0)
    power.lease_ended("request", 900.0, 1200.0)
    sampled(power, board, until=1400.0)  # settled late: long after the readings of 1100 went
    [(_, share)] = power.settled(now=1400.0)
    assert share.gross_mj == pytest.approx(WATTS * 100 * 1000)
    assert (share.seconds, share.measured_seconds) == pytest.approx((300.0, 100.0))
