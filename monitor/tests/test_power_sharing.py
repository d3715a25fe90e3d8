"""Requests in flight together share each instant's energy equally; their shares add up to the node's energy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.tests.energy import eventually, running
from monitor.tests.jetson_tree import orin_nano_chip, orin_nano_jetpack6, set_rail

WATTS = 15.0


def test_it_shares_an_overlap_between_two_requests(tmp_path: Path) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    set_rail(sys, orin_nano_chip(sys), 1, 5000, WATTS * 200)  # 15 W on VDD_IN, held throughout
    with running(sys) as power:
        time.sleep(0.3)
        a_start = time.monotonic()
        power.set_in_flight(1, at=a_start)
        time.sleep(0.8)
        b_start = time.monotonic()
        power.set_in_flight(2, at=b_start)
        time.sleep(1.0)
        a_end = time.monotonic()
        power.set_in_flight(1, at=a_end)
        time.sleep(0.6)
        b_end = time.monotonic()
        power.set_in_flight(0, at=b_end)
        a_gross, _ = eventually(lambda: power.energy_between(a_start, a_end))
        b_gross, _ = eventually(lambda: power.energy_between(b_start, b_end))
        union = power.board_energy_between(a_start, b_end)
    # Alone, then half of the overlap; half of the overlap, then alone.
    assert a_gross == pytest.approx(WATTS * ((b_start - a_start) + (a_end - b_start) / 2) * 1000, rel=0.05)
    assert b_gross == pytest.approx(WATTS * ((a_end - b_start) / 2 + (b_end - a_end)) * 1000, rel=0.05)
    assert a_gross + b_gross == pytest.approx(union, rel=0.001)


def test_it_applies_a_change_stamped_before_the_last_reading_at_its_time(tmp_path: Path) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    set_rail(sys, orin_nano_chip(sys), 1, 5000, WATTS * 200)
    with running(sys) as power:
        time.sleep(0.3)
        start = time.monotonic()
        time.sleep(0.45)  # several readings pass before the request's start is reported
        power.set_in_flight(1, at=start)
        time.sleep(0.8)
        end = time.monotonic()
        time.sleep(0.25)
        power.set_in_flight(0, at=end)
        gross, _ = eventually(lambda: power.energy_between(start, end))
        # After the end, reported late as well, nothing is in flight.
        assert eventually(lambda: power.energy_between(end, end + 0.1)) == (0.0, None)
    assert gross == pytest.approx(WATTS * (end - start) * 1000, rel=0.05)


def test_it_gives_nothing_to_a_span_with_no_request_in_flight(tmp_path: Path) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    with running(sys) as power:
        start = time.monotonic()
        time.sleep(0.5)
        end = time.monotonic()
        gross, _ = eventually(lambda: power.energy_between(start + 0.1, end))
        board = power.board_energy_between(start + 0.1, end)
    assert gross == 0.0
    assert board > 0
