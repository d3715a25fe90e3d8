"""NVIDIA discrete GPUs through `nvidia-smi --query-gpu`, when the tool is installed."""

from __future__ import annotations

import csv
import shutil
import subprocess

FIELDS = (
    "index",
    "name",
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
    "clocks.sm",
)
MIB = 1024 * 1024


def _number(text: str) -> float | None:
    # nvidia-smi prints "[N/A]" or "[Not Supported]" for what a card cannot measure.
    try:
        return float(text)
    except ValueError:
        return None


class NvidiaCollector:
    def __init__(self, command: str | None = None) -> None:
        self.command = command if command is not None else shutil.which("nvidia-smi")

    def collect(self) -> dict:
        if not self.command:
            return {}
        try:
            result = subprocess.run(
                [self.command, f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if result.returncode != 0:
            return {}
        gpus = []
        for row in csv.reader(result.stdout.splitlines(), skipinitialspace=True):
            if len(row) != len(FIELDS):
                continue
            index, name, util, mem_used, mem_total, temp, power, clock = row
            used, total, watts, mhz = _number(mem_used), _number(mem_total), _number(power), _number(clock)
            gpus.append(
                {
                    "index": int(index),
                    "name": name,
                    "percent": _number(util),
                    "memory_used": int(used * MIB) if used is not None else None,
                    "memory_total": int(total * MIB) if total is not None else None,
                    "temperature": _number(temp),
                    "power_mw": round(watts * 1000, 1) if watts is not None else None,
                    "mhz": int(mhz) if mhz is not None else None,
                }
            )
        if not gpus:
            return {}
        temps = {f"gpu{gpu['index']}": gpu["temperature"] for gpu in gpus if gpu["temperature"] is not None}
        return {"gpus": gpus, "temperatures": temps} if temps else {"gpus": gpus}
