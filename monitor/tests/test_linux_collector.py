"""The Linux collector gives CPU per core, RAM, configured disks, network rates and hwmon + thermal temperatures."""

from __future__ import annotations

from pathlib import Path

import psutil

from monitor.collectors.linux import LinuxCollector
from monitor.tests.jetson_tree import agx_orin, write


def test_it_reports_every_core_and_the_machines_memory(tmp_path: Path) -> None:
    data = LinuxCollector(["/"], tmp_path).collect()
    assert data["cpu"]["count"] == len(data["cpu"]["cores"]) == psutil.cpu_count()
    assert 0 <= data["cpu"]["percent"] <= 100
    assert len(data["cpu"]["load"]) == 3
    assert data["memory"]["total"] == psutil.virtual_memory().total
    assert 0 < data["memory"]["used"] < data["memory"]["total"]


def test_it_reports_configured_mounts_and_skips_missing_ones(tmp_path: Path) -> None:
    disks = LinuxCollector([str(tmp_path), str(tmp_path / "unplugged-nvme")], tmp_path).disk_usage()
    assert [disk["mount"] for disk in disks] == [str(tmp_path)]
    assert disks[0]["total"] == psutil.disk_usage(str(tmp_path)).total


def test_it_reads_hwmon_and_thermal_zone_temperatures(tmp_path: Path) -> None:
    sys, _, _ = agx_orin(tmp_path)
    write(sys, "class/hwmon/hwmon5/name", "nvme\n")
    write(sys, "class/hwmon/hwmon5/temp1_input", "41850\n")
    write(sys, "class/hwmon/hwmon5/temp1_label", "Composite\n")
    temps = LinuxCollector([], sys).collect()["temperatures"]
    assert temps == {"nvme Composite": 41.9, "cpu-thermal": 52.6, "gpu-thermal": 48.4, "tj-thermal": 53.0}


def test_it_gives_network_rates_from_the_second_sample_on(tmp_path: Path) -> None:
    collector = LinuxCollector([], tmp_path)
    assert collector.network() == {}
    rates = collector.network()
    assert rates["rx_bps"] >= 0 and rates["tx_bps"] >= 0
    assert set(rates["interfaces"]) == set(psutil.net_io_counters(pernic=True)) - {"lo"}
