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


# The rails each real line prints (read off the line by hand), in its order; "NC" channels are not rails.
RAILS = {
    "agx-orin-64gb-jp6-nc.txt": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"],
    "agx-orin-64gb-l4t3644.txt": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"],
    "agx-orin-64gb-l4t392.txt": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"],
    "nano-jp461.txt": ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"],
    "orin-8gb-jp6.txt": ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"],
    "thor-l4t384.txt": ["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"],
    "thor-l4t392.txt": ["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"],
    "xavier-nx-jp411.txt": ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"],
    "xavier-nx-jp512.txt": ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"],
}
# Thor prints its GPU clock per GPC and no load figure at all.
NO_GPU_LOAD = {"thor-l4t384.txt", "thor-l4t392.txt"}


def test_it_has_the_device_fixtures_to_read() -> None:
    assert sorted(path.name for path in FIXTURES.glob("*.txt")) == sorted(RAILS)


@pytest.mark.parametrize("name", sorted(path.name for path in FIXTURES.glob("*.txt")))
def test_it_reads_ram_cpu_gpu_temperatures_and_power_from_every_fixture(name: str) -> None:
    data = parse(line(name))
    assert data["memory"]["used"] > 0 and data["memory"]["total"] > data["memory"]["used"]
    assert data["cpu"]["count"] == len(data["cpu"]["cores"]) >= 4
    assert "emc_percent" in data["gpu"]
    if name in NO_GPU_LOAD:
        # No load figure is no load figure, not 0 %.
        assert "percent" not in data["gpu"] and len(data["gpu"]["gpc_mhz"]) == 3
    else:
        assert "percent" in data["gpu"]
    assert data["temperatures"]
    assert data["power"]["total_mw"] > 0


@pytest.mark.parametrize("name", sorted(RAILS))
def test_it_keeps_every_rail_of_every_fixture(name: str) -> None:
    power = parse(line(name))["power"]
    assert list(power["rails"]) == RAILS[name]
    for rail in power["rails"].values():
        assert rail["mw"] >= 0 and rail["avg_since_start_mw"] >= 0


def test_it_reads_the_agx_orin_line() -> None:
    data = parse(line("agx-orin-64gb-l4t3644.txt"))
    assert data["tegrastats_time"] == "2026-05-09T18:42:06"
    assert data["memory"] == {"used": 18207 * MB, "total": 62841 * MB, "swap_used": 86 * MB, "swap_total": 31420 * MB}
    assert data["cpu"]["cores"][0] == {"percent": 14.0, "mhz": 2188}
    assert data["cpu"]["count"] == 12
    assert data["gpu"] == {"percent": 0.0, "mhz": 0, "gpc_mhz": [0, 0], "emc_percent": 3.0, "emc_mhz": 2133}
    assert data["temperatures"] == {"cpu": 52.562, "soc2": 48.437, "soc0": 49.093, "tj": 52.562, "soc1": 49.656}
    assert data["power"]["rails"]["VDD_GPU_SOC"] == {"mw": 2412.0, "avg_since_start_mw": 2412.0}
    # No input rail: the sum of the three rails.
    assert data["power"]["total_mw"] == 2412 + 1607 + 4707
    assert data["power"]["total_source"] == "sum of VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0"


def test_it_reads_the_orin_nano_class_line_with_its_input_rail() -> None:
    data = parse(line("orin-8gb-jp6.txt"))
    assert data["gpu"]["percent"] == 84.0 and data["gpu"]["mhz"] == 713
    assert data["power"]["total_mw"] == 17946.0
    assert data["power"]["total_source"] == "VDD_IN"
    assert data["cpu"]["cores"][5] == {"percent": 93.0, "mhz": 247}


def test_it_reads_the_unitless_jetpack_4_nano_line() -> None:
    data = parse(line("nano-jp461.txt"))
    assert "tegrastats_time" not in data
    assert data["gpu"] == {"percent": 0.0, "mhz": 76, "emc_percent": 0.0, "emc_mhz": 1600}
    assert data["power"]["rails"]["POM_5V_CPU"] == {"mw": 366.0, "avg_since_start_mw": 406.0}
    assert data["power"]["total_mw"] == 1750.0
    # IRAM and APE are not known: skipped, not mistaken for rails or temperatures.
    assert set(data["temperatures"]) == {"PLL", "CPU", "PMIC", "GPU", "AO", "thermal"}
    assert "IRAM" not in data["power"]["rails"]


def test_it_skips_the_mts_field_of_jetpack_4_1() -> None:
    data = parse(line("xavier-nx-jp411.txt"))
    assert data["gpu"]["mhz"] == 1109
    assert data["temperatures"]["thermal"] == 31.35
    assert set(data["power"]["rails"]) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}


def test_it_reads_current_average_and_maximum_of_jetpack_7_rails() -> None:
    data = parse(line("thor-l4t392.txt"))
    assert data["power"]["rails"]["VDD_CPU_SOC_MSS"] == {
        "mw": 7953.0,
        "avg_since_start_mw": 8332.0,
        "max_since_start_mw": 8710.0,
    }
    # The current values make the total, never the averages since tegrastats started.
    assert data["power"]["total_mw"] == 4925 + 7953 + 6667
    assert data["power"]["total_source"] == "sum of VDD_GPU + VDD_CPU_SOC_MSS + VIN_SYS_5V0"
    # Temperatures printed as current/maximum keep the current one.
    assert data["temperatures"]["cpu"] == 34.312


def test_it_reads_thor_per_gpc_clocks_without_a_load_figure() -> None:
    data = parse(line("thor-l4t392.txt"))
    assert data["gpu"] == {"mhz": 314, "gpc_mhz": [314, 314, 314], "emc_percent": 7.0, "emc_mhz": 3200}
    assert data["cpu"]["count"] == 14
    assert data["tegrastats_time"] == "2026-07-23T15:29:27"


def test_it_reads_the_agx_orin_jetpack_7_line_with_load_and_per_gpc_clocks() -> None:
    data = parse(line("agx-orin-64gb-l4t392.txt"))
    assert data["gpu"] == {"percent": 12.0, "mhz": 1300, "gpc_mhz": [1300, 1300], "emc_percent": 3.0, "emc_mhz": 3199}
    assert data["power"]["rails"]["VIN_SYS_5V0"]["max_since_start_mw"] == 5500.0


def test_it_skips_the_unconnected_channels_and_sums_the_four_agx_orin_rails() -> None:
    data = parse(line("agx-orin-64gb-jp6-nc.txt"))
    assert "NC" not in data["power"]["rails"]
    assert data["power"]["total_mw"] == 2340 + 390 + 4025 + 301
    assert data["power"]["total_source"] == "sum of VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 + VDDQ_VDD2_1V8AO"


def test_it_takes_the_thor_carrier_input_as_the_total() -> None:
    data = parse("VDD_GPU 1962mW/1962mW VDD_CPU_SOC_MSS 5887mW/5887mW VIN_SYS_5V0 5635mW/5635mW VIN 19780mW/19780mW")
    assert data["power"]["total_mw"] == 19780.0
    assert data["power"]["total_source"] == "VIN"


def test_it_reads_an_emc_clock_without_a_load_figure() -> None:
    assert parse("EMC_FREQ @4266 GR3D_FREQ @[1574,1574,1574]")["gpu"] == {
        "mhz": 1574,
        "gpc_mhz": [1574, 1574, 1574],
        "emc_mhz": 4266,
    }


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
