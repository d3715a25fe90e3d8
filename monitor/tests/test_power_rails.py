"""Rails are found by hwmon name and label, never by number; the board total is the input rail or the module's sum."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.collectors import rails
from monitor.collectors.jetson import JetsonCollector
from monitor.tests.jetson_tree import (
    I2C,
    agx_orin,
    ina3221,
    nano_jetpack4,
    orin_nano_chip,
    orin_nano_jetpack6,
    set_rail,
    thor,
    thor_ina238,
    write,
)

AGX_ORIN_RAILS = ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]


def readings(sys: Path) -> list[tuple[str, float | None]]:
    return [(rail.name, rail.read_mw()) for rail in rails.discover(sys)]


@pytest.mark.parametrize("numbers", [(1, 2), (7, 5)])
def test_it_finds_the_agx_orin_rails_by_name_whatever_the_hwmon_numbers(tmp_path: Path, numbers: tuple) -> None:
    sys, _, _ = agx_orin(tmp_path, hwmon_numbers=numbers)
    # The same rails in the same order, though the second tree numbers the chips the other way round.
    assert readings(sys) == [
        ("VDD_GPU_SOC", 5000.0),
        ("VDD_CPU_CV", 2000.0),
        ("VIN_SYS_5V0", 4500.0),
        ("VDDQ_VDD2_1V8AO", 500.0),
    ]


def test_it_skips_unconnected_channels_and_the_sum_of_shunts(tmp_path: Path) -> None:
    sys, _, _ = agx_orin(tmp_path)
    names = [rail.name for rail in rails.discover(sys)]
    assert names == AGX_ORIN_RAILS
    assert "NC" not in names and not any(name.startswith("sum of") for name in names)


def test_it_sums_the_four_module_rails_of_an_agx_orin(tmp_path: Path) -> None:
    sys, _, _ = agx_orin(tmp_path)
    chosen, source = rails.board_total(rail.name for rail in rails.discover(sys))
    assert chosen == AGX_ORIN_RAILS
    assert source == "sum of VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 + VDDQ_VDD2_1V8AO"


@pytest.mark.parametrize("number", [1, 6])
def test_it_takes_vdd_in_as_an_orin_nano_total(tmp_path: Path, number: int) -> None:
    sys, _, _ = orin_nano_jetpack6(tmp_path, hwmon_number=number)
    found = rails.discover(sys)
    assert [rail.name for rail in found] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert rails.board_total(rail.name for rail in found) == (["VDD_IN"], "VDD_IN")
    assert found[0].read_mw() == 17500.0


@pytest.mark.parametrize("numbers", [(1, 2), (4, 0)])
def test_it_reads_the_thor_carrier_ina238_in_microwatts_as_vin(tmp_path: Path, numbers: tuple) -> None:
    sys, _, _ = thor(tmp_path, hwmon_numbers=numbers)
    found = {rail.name: rail for rail in rails.discover(sys)}
    assert list(found) == ["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN"]
    assert found["VIN"].chip == "ina238"
    assert found["VIN"].read_mw() == pytest.approx(19780.0)
    assert found["VIN"].read() == {"mw": 19780.0, "mv": 19840.0, "ma": 997.0}
    assert found["VDD_GPU"].read_mw() == pytest.approx(12040 * 640 / 1000)
    assert rails.board_total(found) == (["VIN"], "VIN")


@pytest.mark.parametrize("label_file", ["label", "power1_label", "in1_label"])
def test_it_names_an_ina238_after_its_label_when_it_has_one(tmp_path: Path, label_file: str) -> None:
    sys, _, _ = thor(tmp_path)
    write(sys, f"{thor_ina238(sys)}/{label_file}", "VIN_CARRIER\n")
    assert "VIN_CARRIER" in [rail.name for rail in rails.discover(sys)]


def test_it_reads_only_the_files_of_a_rail(tmp_path: Path) -> None:
    sys, _, _ = thor(tmp_path)
    found = {rail.name: rail for rail in rails.discover(sys)}
    # One file for the chip that measures power itself, voltage and current for the INA3221.
    assert [path.name for path in found["VIN"].paths()] == ["power1_input"]
    assert [path.name for path in found["VDD_GPU"].paths()] == ["in1_input", "curr1_input"]


def test_it_still_reads_jetpack_4_iio_rails(tmp_path: Path) -> None:
    sys, _, _ = nano_jetpack4(tmp_path)
    found = rails.discover(sys)
    assert {rail.name: rail.read_mw() for rail in found} == {
        "POM_5V_IN": 4100.0,
        "POM_5V_GPU": 1500.0,
        "POM_5V_CPU": 900.0,
    }
    assert rails.board_total(rail.name for rail in found) == (["POM_5V_IN"], "POM_5V_IN")


def test_it_puts_the_total_and_its_source_into_the_sample(tmp_path: Path) -> None:
    sys, proc, etc = thor(tmp_path)
    power = JetsonCollector(sys, proc, etc, nvpmodel=[]).collect()["power"]
    assert power["total_mw"] == 19780.0
    assert power["total_source"] == "VIN"
    assert set(power["rails"]) == {"VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN"}


def test_it_discovers_once_and_then_only_reads(tmp_path: Path) -> None:
    sys, proc, etc = orin_nano_jetpack6(tmp_path)
    collector = JetsonCollector(sys, proc, etc, nvpmodel=[])
    assert collector.collect()["power"]["total_mw"] == 17500.0
    # A device that appears later is not looked for again; the known rails' new values are read.
    ina3221(sys, f"{I2C}/1-0041", 9, {1: ("VDD_EXTRA", 5000, 100)})
    set_rail(sys, orin_nano_chip(sys), 1, 5000, 2000)
    power = collector.collect()["power"]
    assert "VDD_EXTRA" not in power["rails"]
    assert power["total_mw"] == 10000.0


def test_it_finds_nothing_on_a_machine_without_power_monitors(tmp_path: Path) -> None:
    write(tmp_path / "sys", "class/hwmon/hwmon0/name", "k10temp\n")
    assert rails.discover(tmp_path / "sys") == []
