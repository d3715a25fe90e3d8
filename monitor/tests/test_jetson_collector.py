"""The Jetson collector reads GPU, EMC, NvMap, power rails, fans, board and power mode from sysfs trees."""

from __future__ import annotations

from pathlib import Path

from monitor.collectors import files
from monitor.collectors.jetson import JetsonCollector
from monitor.tests.jetson_tree import agx_orin, fake_nvpmodel, nano_jetpack4, orin_nano_jetpack6, write


def test_it_reads_an_agx_orin_tree(tmp_path: Path) -> None:
    sys, proc, etc = agx_orin(tmp_path)
    data = JetsonCollector(sys, proc, etc, nvpmodel=fake_nvpmodel(tmp_path, "MAXN")).collect()

    assert data["gpu"] == {"percent": 52.3, "mhz": 1300, "max_mhz": 1301, "emc_mhz": 2133}
    assert data["memory"] == {"gpu_shared": 1024 * 1024 * 1024}
    assert data["power"]["rails"] == {
        "VDD_GPU_SOC": {"mw": 5000.0, "mv": 5000.0, "ma": 1000.0},
        "VDD_CPU_CV": {"mw": 2000.0, "mv": 5000.0, "ma": 400.0},
        "VIN_SYS_5V0": {"mw": 4500.0, "mv": 5000.0, "ma": 900.0},
        "VDDQ_VDD2_1V8AO": {"mw": 500.0, "mv": 5000.0, "ma": 100.0},
    }
    # No input rail on an AGX Orin: the total is the sum of the rails.
    assert data["power"]["total_mw"] == 12000.0
    assert data["power"]["total_source"] == "sum of VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 + VDDQ_VDD2_1V8AO"
    assert data["fans"] == {"pwmfan": {"pwm_percent": 50.2}, "pwm_tach": {"rpm": 2345}}
    assert data["board"] == {
        "model": "NVIDIA Jetson AGX Orin Developer Kit",
        "l4t_release": "36.4.4",
        "power_mode": "MAXN",
    }


def test_it_skips_the_offline_thermal_zone(tmp_path: Path) -> None:
    sys, _, _ = agx_orin(tmp_path)
    assert files.thermal_zones(sys) == {"cpu-thermal": 52.6, "gpu-thermal": 48.4, "tj-thermal": 53.0}


def test_it_reads_an_orin_nano_tree_with_an_input_rail(tmp_path: Path) -> None:
    sys, proc, etc = orin_nano_jetpack6(tmp_path)
    data = JetsonCollector(sys, proc, etc, nvpmodel=[]).collect()

    assert data["gpu"] == {"percent": 84.0, "mhz": 612, "max_mhz": None}
    # VDD_IN is the module's input: the other rails are part of it, not added to it.
    assert data["power"]["total_mw"] == 17500.0
    assert data["power"]["total_source"] == "VDD_IN"
    assert "memory" not in data and "fans" not in data


def test_it_reads_a_jetpack_4_nano_tree(tmp_path: Path) -> None:
    sys, proc, etc = nano_jetpack4(tmp_path)
    data = JetsonCollector(sys, proc, etc, nvpmodel=[]).collect()

    assert data["gpu"] == {"percent": 76.0}
    # POM_5V_IN measures the module's input, which already includes the other rails.
    assert data["power"]["total_mw"] == 4100.0
    assert data["power"]["total_source"] == "POM_5V_IN"
    assert set(data["power"]["rails"]) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}
    assert data["fans"] == {"pwm-fan": {"pwm_percent": 100.0, "rpm": 4100}}
    assert data["board"] == {"model": "NVIDIA Jetson Nano Developer Kit", "l4t_release": "32.7.1"}


def test_it_reports_nothing_where_there_is_no_jetson(tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    assert JetsonCollector(empty, empty, empty, nvpmodel=[str(tmp_path / "missing-nvpmodel")]).collect() == {}


def test_it_keeps_the_power_mode_between_queries(tmp_path: Path) -> None:
    sys, proc, etc = agx_orin(tmp_path)
    collector = JetsonCollector(sys, proc, etc, nvpmodel=fake_nvpmodel(tmp_path, "15W"))
    assert collector.power_mode() == "15W"
    # A changed mode shows only at the next query (once a minute), not on every sample.
    fake_nvpmodel(tmp_path, "MAXN")
    assert collector.power_mode() == "15W"
    collector._power_mode = None
    assert collector.power_mode() == "MAXN"


def test_it_shows_throttle_evidence(tmp_path: Path) -> None:
    sys, proc, etc = agx_orin(tmp_path)
    write(sys, "class/hwmon/hwmon7/name", "soctherm_oc\n")
    write(sys, "class/hwmon/hwmon7/oc1_event_cnt", "3\n")
    write(sys, "class/hwmon/hwmon7/oc2_event_cnt", "0\n")
    write(sys, "devices/system/cpu/cpufreq/policy0/scaling_max_freq", "1420800\n")
    write(sys, "devices/system/cpu/cpufreq/policy0/cpuinfo_max_freq", "2201600\n")
    collector = JetsonCollector(sys, proc, etc, nvpmodel=[])
    first = collector.collect()["throttle"]
    assert first["oc_events"] == {"oc1": 3, "oc2": 0}
    assert first["oc_events_rising"] == []
    assert first["cpu_capped"] == ["policy0"]
    write(sys, "class/hwmon/hwmon7/oc2_event_cnt", "5\n")
    assert collector.collect()["throttle"]["oc_events_rising"] == ["oc2"]
