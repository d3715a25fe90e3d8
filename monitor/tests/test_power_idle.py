"""Idle power is measured while nothing at all runs (no lease of any kind, no model loading), subtracted for net
energy (never below zero), and kept per node and power mode."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.models import IdlePower, Node
from monitor.power import PowerSampler, keep_idle_power, save_idle_power
from monitor.tests.energy import FakeBoard, eventually, running, sampled, written_energy
from monitor.tests.jetson_tree import orin_nano_chip, orin_nano_jetpack6, set_rail

IDLE_MW, BUSY_MW = 4000.0, 10000.0


def test_it_subtracts_the_idle_power_measured_while_nothing_ran(tmp_path: Path) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    chip = orin_nano_chip(sys)
    set_rail(sys, chip, 1, 5000, IDLE_MW / 5)
    # 50 readings a second: the test is about the subtraction, so the smear at each change of the rail is kept small.
    with running(sys, hz=50, idle_min=0.3) as power:
        # The first readings are not idle power yet: the board settles after the last request.
        time.sleep(0.2)
        assert power.idle_power() is None
        eventually(lambda: power.idle_power() if power.idle_power() and power.idle_power()[1] >= 1.0 else None)
        assert power.idle_power()[0] == pytest.approx(IDLE_MW, rel=0.01)
        # The board draws 10 W while the request runs (power drawn with nothing in flight would count as idle).
        start = time.monotonic()
        power.set_in_flight(1, at=start)
        steps = [(start, IDLE_MW)]
        time.sleep(0.1)
        set_rail(sys, chip, 1, 5000, BUSY_MW / 5)
        steps.append((time.monotonic(), BUSY_MW))
        time.sleep(1.5)
        set_rail(sys, chip, 1, 5000, IDLE_MW / 5)
        steps.append((time.monotonic(), IDLE_MW))
        time.sleep(0.1)
        end = time.monotonic()
        power.set_in_flight(0, at=end)
        gross, net = eventually(lambda: power.energy_between(start, end))
    drawn = written_energy(steps, start, end)
    assert gross == pytest.approx(drawn, rel=0.05)
    assert net == pytest.approx(drawn - IDLE_MW * (end - start), rel=0.05)


def test_it_leaves_net_energy_unknown_until_idle_power_is_measured(tmp_path: Path) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    with running(sys, idle_min=60.0) as power:
        time.sleep(0.3)
        start = time.monotonic()
        power.set_in_flight(1, at=start)
        time.sleep(0.5)
        end = time.monotonic()
        power.set_in_flight(0, at=end)
        gross, net = eventually(lambda: power.energy_between(start, end))
    assert gross > 0
    assert net is None


def test_it_keeps_idle_power_apart_for_each_power_mode(tmp_path: Path, db: None) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    node = Node.objects.create(name="orin-nano", power_mode="15W")
    with running(sys, idle_min=0.2) as power:
        keep_idle_power(power, node, now=0.0, last_saved=0.0)
        assert power.power_mode == "15W" and power.idle_power() is None
        eventually(lambda: power.idle_power())
        measured_15w = power.idle_power()
        assert measured_15w[0] == pytest.approx(17500.0, rel=0.01)  # VDD_IN of the fake Orin Nano

        # A new mode: the 15 W figure is stored, and the new mode starts from what is stored for it (nothing).
        node.power_mode = "7W"
        keep_idle_power(power, node, now=1.0, last_saved=0.0)
        assert power.power_mode == "7W" and power.idle_power() is None
        assert IdlePower.objects.recall(node, "15W")[0] == pytest.approx(measured_15w[0], rel=0.01)
        assert IdlePower.objects.recall(node, "7W") is None

        set_rail(sys, orin_nano_chip(sys), 1, 5000, 1400)  # 7 W
        eventually(lambda: power.idle_power() if power.idle_power() and power.idle_power()[1] > 0.5 else None)
        save_idle_power(power, node)

        node.power_mode = "15W"
        keep_idle_power(power, node, now=2.0, last_saved=0.0)
        assert power.idle_power()[0] == pytest.approx(17500.0, rel=0.01)
    assert IdlePower.objects.recall(node, "7W")[0] == pytest.approx(7000.0, rel=0.05)
    assert IdlePower.objects.filter(node=node).count() == 2


def test_it_stores_a_changed_idle_power_at_most_once_a_minute(tmp_path: Path, db: None) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    node = Node.objects.create(name="orin-nano", power_mode="MAXN")
    with running(sys, idle_min=0.2) as power:
        saved = keep_idle_power(power, node, now=100.0, last_saved=0.0)
        eventually(lambda: power.idle_power())
        assert keep_idle_power(power, node, now=130.0, last_saved=saved) == saved
        assert not IdlePower.objects.exists()
        assert keep_idle_power(power, node, now=161.0, last_saved=saved) == 161.0
    assert IdlePower.objects.recall(node, "MAXN")[0] == pytest.approx(17500.0, rel=0.01)


def test_it_reports_nothing_without_a_power_sensor(tmp_path: Path) -> None:
    from monitor.power import board_power_source

    assert board_power_source(tmp_path / "sys", None, 100) is None
    assert board_power_source(tmp_path / "sys", str(tmp_path / "missing-nvidia-smi"), 100) is None
    power = PowerSampler(None)
    power.start()
    power.set_in_flight(1)
    assert not power.available
    assert power.tick() is False
    # No figures at all: never a zero that would read as "this request cost nothing".
    assert power.energy_between(time.monotonic() - 1, time.monotonic()) is None
    assert power.board_energy_between(time.monotonic() - 1, time.monotonic()) is None
    assert power.snapshot() is None
    assert power.idle_power() is None
    power.stop()


@pytest.mark.parametrize("what", ["an embedding", "a model loading"])
def test_it_learns_nothing_while_the_node_is_busy_without_generating(what: str) -> None:
    # The supervisor counts embeddings and loads in `busy`, not in the generation requests `n` that share energy.
    board = FakeBoard(BUSY_MW)
    power = PowerSampler(board, hz=10, idle_min=5.0)
    power.set_in_flight(0, at=board.at, busy=1)
    sampled(power, board, until=1060.0)
    assert power.idle_power() is None, f"{what} drew power that was taken for idle"
    power.set_in_flight(0, at=1060.0, busy=0)
    board.mw = IDLE_MW
    sampled(power, board, until=1080.0)
    # Only what was drawn 5 s (idle_min) after it ended.
    assert power.idle_power() == pytest.approx((IDLE_MW, 15.0))


def test_its_net_energy_is_never_negative() -> None:
    # Idle power stored at 10 W; the board then draws 5 W while a request runs (a cooler board, a lower power mode).
    board = FakeBoard(5000.0)
    power = PowerSampler(board, hz=10)
    power.use_power_mode("MAXN", (10000.0, 600.0))
    sampled(power, board, until=1001.0)
    power.set_in_flight(1, at=1001.0)
    sampled(power, board, until=1011.0)
    power.set_in_flight(0, at=1011.0)
    power.lease_ended("request", 1001.0, 1011.0)
    sampled(power, board, until=1012.0)
    [(_, share)] = power.settled()
    assert share.gross_mj == pytest.approx(50_000.0)
    assert share.net_mj == 0.0
