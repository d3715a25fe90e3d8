"""The power sampler integrates the board power a test writes into the fake tree while it runs (within 5 %)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.tests.energy import eventually, running, written_energy
from monitor.tests.jetson_tree import agx_orin, orin_nano_chip, orin_nano_jetpack6, set_rail, thor, thor_ina238, write


def test_it_integrates_vdd_in_as_it_changes(tmp_path: Path) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    chip = orin_nano_chip(sys)
    steps = []
    with running(sys) as power:
        for milliamps in (2000, 4000, 2400):  # 10 W, 20 W, 12 W on VDD_IN at 5 V
            set_rail(sys, chip, 1, 5000, milliamps)
            steps.append((time.monotonic(), 5000 * milliamps / 1000))
            time.sleep(1.5)
        start, end = steps[0][0] + 0.3, time.monotonic() - 0.2
        measured = eventually(lambda: power.board_energy_between(start, end))
    expected = written_energy(steps, start, end)
    assert measured == pytest.approx(expected, rel=0.05)


def test_it_gives_one_request_in_flight_the_whole_energy(tmp_path: Path) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path)
    chip = orin_nano_chip(sys)
    steps = []
    with running(sys) as power:
        time.sleep(0.3)
        began = time.monotonic()
        power.set_in_flight(1, at=began)
        for milliamps in (3000, 1000):  # 15 W, then 5 W
            set_rail(sys, chip, 1, 5000, milliamps)
            steps.append((time.monotonic(), 5000 * milliamps / 1000))
            time.sleep(1.2)
        ended = time.monotonic()
        power.set_in_flight(0, at=ended)
        gross, _ = eventually(lambda: power.energy_between(began, ended))
        board = power.board_energy_between(began, ended)
    assert gross == pytest.approx(board, rel=1e-4)
    assert gross == pytest.approx(written_energy(steps, began, ended), rel=0.05)


def test_it_sums_the_four_agx_orin_rails(tmp_path: Path) -> None:
    sys, _, _ = agx_orin(tmp_path)
    chip = next((sys / "devices/platform/bus@0/c240000.i2c/i2c-1/1-0040/hwmon").glob("hwmon*")).relative_to(sys)
    with running(sys) as power:
        time.sleep(0.3)
        start = time.monotonic()
        time.sleep(1.0)
        set_rail(sys, str(chip), 1, 5000, 3000)  # VDD_GPU_SOC from 5 W to 15 W: the total from 12 W to 22 W
        changed = time.monotonic()
        time.sleep(1.0)
        end = time.monotonic()
        measured = eventually(lambda: power.board_energy_between(start, end))
        assert power.snapshot()["source"] == "sum of VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 + VDDQ_VDD2_1V8AO"
    assert measured == pytest.approx(written_energy([(start, 12000.0), (changed, 22000.0)], start, end), rel=0.05)


def test_it_reads_the_thor_carrier_input_only(tmp_path: Path) -> None:
    sys, _, _ = thor(tmp_path)
    chip = thor_ina238(sys)
    with running(sys) as power:
        time.sleep(0.3)
        start = time.monotonic()
        time.sleep(0.8)
        write(sys, f"{chip}/power1_input", "45000000\n")  # 19.78 W to 45 W, in µW
        changed = time.monotonic()
        time.sleep(0.8)
        end = time.monotonic()
        measured = eventually(lambda: power.board_energy_between(start, end))
        assert power.snapshot()["source"] == "VIN"
    assert measured == pytest.approx(written_energy([(start, 19780.0), (changed, 45000.0)], start, end), rel=0.05)
