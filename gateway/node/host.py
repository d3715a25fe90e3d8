"""This machine's memory and NVIDIA cards, read alike by the sampler (monitor) and by the supervisor's model budget
(gateway.lifecycle): a file or a tool that is missing, fails or prints garbage gives nothing, never an error."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

MIB = 1024 * 1024
# What each card is asked for, in this order.
GPU_FIELDS = (
    "index",
    "name",
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
    "clocks.sm",
    # A hardware counter: mJ since the driver was loaded (Volta and newer; "[N/A]" or "[Not Supported]" elsewhere).
    "total_energy_consumption",
)


def meminfo(proc_root: Path) -> dict[str, int]:
    """/proc/meminfo as bytes by field name."""
    try:
        text = (proc_root / "meminfo").read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return fields


def smi_number(text: str) -> float | None:
    # nvidia-smi prints "[N/A]" or "[Not Supported]" for what a card cannot measure.
    try:
        return float(text)
    except ValueError:
        return None


def nvidia_smi(command: str | None, fields: tuple[str, ...]) -> list[list[str]]:
    """nvidia-smi's answer to `--query-gpu=<fields>`, a row of texts per card; none without the tool or when it
    fails."""
    if not command:
        return []
    try:
        result = subprocess.run(
            [command, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    return [row for row in csv.reader(result.stdout.splitlines(), skipinitialspace=True) if row]


def nvidia_gpus(command: str | None) -> list[dict]:
    """Each card's load, memory, temperature, power, clock and energy counter (None where it cannot measure them)."""
    gpus = []
    for row in nvidia_smi(command, GPU_FIELDS):
        if len(row) != len(GPU_FIELDS):
            continue
        index, name, util, mem_used, mem_total, temp, power, clock, energy = row
        used, total, watts, mhz = smi_number(mem_used), smi_number(mem_total), smi_number(power), smi_number(clock)
        gpus.append(
            {
                "index": int(index),
                "name": name,
                "percent": smi_number(util),
                "memory_used": int(used * MIB) if used is not None else None,
                "memory_total": int(total * MIB) if total is not None else None,
                "temperature": smi_number(temp),
                "power_mw": round(watts * 1000, 1) if watts is not None else None,
                "mhz": int(mhz) if mhz is not None else None,
                "total_energy_mj": smi_number(energy),
            }
        )
    return gpus
