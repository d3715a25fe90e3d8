"""A machine with NVIDIA GPUs and no power rails integrates the GPUs' hardware energy counter, where they have one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.collectors.nvidia import NvidiaEnergyCounter, energy_counters
from monitor.power import PowerSampler, board_power_source
from monitor.tests.energy import eventually

MJ_PER_LINE = 1500  # each GPU's counter grows by 1.5 J every 0.1 s: 15 W a card


def fake_smi(folder: Path, gpus: int = 1, counter: str | None = None) -> str:
    """An nvidia-smi answering the energy query once, or in a loop with --loop-ms as the real one does."""
    once = "\n".join(counter or str(1_000_000 + index) for index in range(gpus))
    loop = "; ".join(f"echo $((1000000 + {index} + i * {MJ_PER_LINE}))" for index in range(gpus))
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *--loop-ms*) i=0; while true; do {loop}; i=$((i + 1)); sleep 0.1; done ;;\n"
        f"  *) printf '%s\\n' '{once}' ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return str(script)


def test_it_reads_each_gpu_counter_once(tmp_path: Path) -> None:
    assert energy_counters(fake_smi(tmp_path, gpus=2)) == [1_000_000.0, 1_000_001.0]
    assert energy_counters(str(tmp_path / "missing")) == []


@pytest.mark.parametrize("answer", ["[N/A]", "[Not Supported]"])
def test_it_takes_no_counter_from_cards_that_cannot_measure_energy(tmp_path: Path, answer: str) -> None:
    command = fake_smi(tmp_path, counter=answer)
    assert energy_counters(command) == [None]
    assert NvidiaEnergyCounter.probe(command, 100) is None
    assert board_power_source(tmp_path / "sys", command, 100) is None


@pytest.mark.parametrize("gpus", [1, 2])
def test_it_integrates_the_counter_of_every_gpu(tmp_path: Path, gpus: int) -> None:
    source = board_power_source(tmp_path / "sys", fake_smi(tmp_path, gpus=gpus), 100)
    assert source is not None
    power = PowerSampler(source, hz=10)
    power.start()
    try:
        time.sleep(0.5)
        start = time.monotonic()
        power.set_in_flight(1, at=start)
        time.sleep(1.5)
        end = time.monotonic()
        power.set_in_flight(0, at=end)
        gross, _ = eventually(lambda: power.energy_between(start, end))
        board = power.board_energy_between(start, end)
        snapshot = power.snapshot()
    finally:
        power.stop()
    # The counter is taken as it is: the energy since the first reading is a whole number of increments.
    assert snapshot["energy_mj"] % (MJ_PER_LINE * gpus) == 0 and snapshot["energy_mj"] > 0
    assert gross == pytest.approx(board, rel=1e-4)
    # The shell's sleep runs a little over 0.1 s: a little under 15 W a card, never over.
    assert 0.85 * 15 * gpus <= gross / 1000 / (end - start) <= 1.02 * 15 * gpus
    assert snapshot["source"].startswith("nvidia-smi total_energy_consumption")
