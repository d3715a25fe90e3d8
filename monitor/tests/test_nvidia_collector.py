"""The nvidia-smi collector reads discrete GPUs from `--query-gpu` CSV, and nothing when the tool is missing."""

from __future__ import annotations

from pathlib import Path

from monitor.collectors.nvidia import NvidiaCollector

# What nvidia-smi 550 prints for this query on a machine with two cards (the second cannot report power, and
# has no energy counter: Volta and newer only).
OUTPUT = """0, NVIDIA GeForce RTX 3090, 87, 20345, 24576, 71, 312.45, 1905, 4851276342
1, NVIDIA T400, 0, 5, 2048, 38, [N/A], 300, [Not Supported]
"""


def fake_smi(folder: Path, output: str, code: int = 0) -> str:
    (folder / "out.txt").write_text(output)
    script = folder / "nvidia-smi"
    script.write_text(f'#!/bin/sh\ncat "{folder / "out.txt"}"\nexit {code}\n')
    script.chmod(0o755)
    return str(script)


def test_it_reads_each_card(tmp_path: Path) -> None:
    data = NvidiaCollector(fake_smi(tmp_path, OUTPUT)).collect()
    first, second = data["gpus"]
    assert first == {
        "index": 0,
        "name": "NVIDIA GeForce RTX 3090",
        "percent": 87.0,
        "memory_used": 20345 * 1024 * 1024,
        "memory_total": 24576 * 1024 * 1024,
        "temperature": 71.0,
        "power_mw": 312450.0,
        "mhz": 1905,
        "total_energy_mj": 4851276342.0,
    }
    assert second["power_mw"] is None
    assert second["total_energy_mj"] is None
    assert data["temperatures"] == {"gpu0": 71.0, "gpu1": 38.0}


def test_it_reports_nothing_without_nvidia_smi(tmp_path: Path) -> None:
    assert NvidiaCollector(str(tmp_path / "missing")).collect() == {}
    assert NvidiaCollector("").collect() == {}


def test_it_reports_nothing_when_the_driver_fails(tmp_path: Path) -> None:
    failing = fake_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 9)
    assert NvidiaCollector(failing).collect() == {}
