"""The tegrastats parser reads every real device line in fixtures/tegrastats and skips fields it does not know."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from monitor.collectors.tegrastats import MB, TegrastatsCollector, parse

# Real lines from real devices; fixtures/tegrastats/README.md says where each comes from.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tegrastats"


def line(name: str) -> str:
    return (FIXTURES / name).read_text().strip()


def test_it_has_the_device_fixtures_to_read() -> None:
    assert len(list(FIXTURES.glob("*.txt"))) >= 5


@pytest.mark.parametrize("name", sorted(path.name for path in FIXTURES.glob("*.txt")))
def test_it_reads_ram_cpu_gpu_temperatures_and_power_from_every_fixture(name: str) -> None:
    data = parse(line(name))
    assert data["memory"]["used"] > 0 and data["memory"]["total"] > data["memory"]["used"]
    assert data["cpu"]["count"] == len(data["cpu"]["cores"]) >= 4
    assert "percent" in data["gpu"] and "emc_percent" in data["gpu"]
    assert data["temperatures"]
    assert data["power"]["rails"] and data["power"]["total_mw"] > 0


def test_it_reads_the_agx_orin_line() -> None:
    data = parse(line("agx-orin-64gb-l4t3644.txt"))
    assert data["tegrastats_time"] == "2026-05-09T18:42:06"
    assert data["memory"] == {"used": 18207 * MB, "total": 62841 * MB, "swap_used": 86 * MB, "swap_total": 31420 * MB}
    assert data["cpu"]["cores"][0] == {"percent": 14.0, "mhz": 2188}
    assert data["cpu"]["count"] == 12
    assert data["gpu"] == {"percent": 0.0, "mhz": 0, "emc_percent": 3.0, "emc_mhz": 2133}
    assert data["temperatures"] == {"cpu": 52.562, "soc2": 48.437, "soc0": 49.093, "tj": 52.562, "soc1": 49.656}
    assert data["power"]["rails"]["VDD_GPU_SOC"] == {"mw": 2412.0, "avg_mw": 2412.0}
    # No input rail: the sum of the three rails.
    assert data["power"]["total_mw"] == 2412 + 1607 + 4707


def test_it_reads_the_orin_nano_class_line_with_its_input_rail() -> None:
    data = parse(line("orin-8gb-jp6.txt"))
    assert data["gpu"]["percent"] == 84.0 and data["gpu"]["mhz"] == 713
    assert data["power"]["total_mw"] == 17946.0
    assert data["cpu"]["cores"][5] == {"percent": 93.0, "mhz": 247}


def test_it_reads_the_unitless_jetpack_4_nano_line() -> None:
    data = parse(line("nano-jp461.txt"))
    assert "tegrastats_time" not in data
    assert data["gpu"] == {"percent": 0.0, "mhz": 76, "emc_percent": 0.0, "emc_mhz": 1600}
    assert data["power"]["rails"]["POM_5V_CPU"] == {"mw": 366.0, "avg_mw": 406.0}
    assert data["power"]["total_mw"] == 1750.0
    # IRAM and APE are not known: skipped, not mistaken for rails or temperatures.
    assert set(data["temperatures"]) == {"PLL", "CPU", "PMIC", "GPU", "AO", "thermal"}
    assert "IRAM" not in data["power"]["rails"]


def test_it_skips_the_mts_field_of_jetpack_4_1() -> None:
    data = parse(line("xavier-nx-jp411.txt"))
    assert data["gpu"]["mhz"] == 1109
    assert data["temperatures"]["thermal"] == 31.35
    assert set(data["power"]["rails"]) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}


def test_it_skips_offline_sensors_and_cores() -> None:
    data = parse("RAM 100/200MB CPU [10%@1000,off] GR3D_FREQ 5% PLL@-256C GPU@40C VDD_IN 1000mW/900mW")
    assert data["temperatures"] == {"GPU": 40.0}
    assert data["cpu"]["cores"][1] == {"percent": None, "mhz": None}
    assert data["cpu"]["percent"] == 10.0
    assert data["gpu"] == {"percent": 5.0}


def test_it_reads_the_last_complete_line_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "tegrastats.log"
    log.write_text(line("nano-jp461.txt") + "\n" + line("orin-8gb-jp6.txt") + "\nRAM 1/2")
    assert TegrastatsCollector(log).collect() == parse(line("orin-8gb-jp6.txt"))


def test_it_ignores_a_stale_or_missing_log(tmp_path: Path) -> None:
    log = tmp_path / "tegrastats.log"
    assert TegrastatsCollector(log).collect() == {}
    log.write_text(line("orin-8gb-jp6.txt") + "\n")
    hour_ago = time.time() - 3600
    os.utime(log, (hour_ago, hour_ago))
    assert TegrastatsCollector(log).collect() == {}
