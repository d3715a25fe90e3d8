"""NVIDIA discrete GPUs through `nvidia-smi --query-gpu`, when the tool is installed; their energy counters."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from gateway.node.host import nvidia_gpus, nvidia_smi, smi_number


class NvidiaCollector:
    def __init__(self, command: str | None = None) -> None:
        self.command = command if command is not None else shutil.which("nvidia-smi")

    def collect(self) -> dict:
        gpus = nvidia_gpus(self.command)
        if not gpus:
            return {}
        temps = {f"gpu{gpu['index']}": gpu["temperature"] for gpu in gpus if gpu["temperature"] is not None}
        return {"gpus": gpus, "temperatures": temps} if temps else {"gpus": gpus}


@dataclass(frozen=True)
class CounterReading:
    """The GPUs' summed energy counter (mJ) and the monotonic time nvidia-smi printed it."""

    at: float
    mj: float


def energy_counters(command: str | None) -> list[float | None]:
    """Each GPU's energy counter once (None where the card has none); empty without nvidia-smi."""
    return [smi_number(row[0]) for row in nvidia_smi(command, ("total_energy_consumption",))]


class NvidiaEnergyCounter:
    """The GPUs' hardware energy counter, printed by one long-running `nvidia-smi --loop-ms`: starting nvidia-smi
    ten times a second would cost far more than the reading, and a counter needs no integration of its own."""

    def __init__(self, command: str, gpus: int, period_ms: int) -> None:
        self.command = command
        self.gpus = gpus
        self.period_ms = period_ms
        self.name = "nvidia-smi total_energy_consumption" + (f" (sum of {gpus} GPUs)" if gpus > 1 else "")
        self._latest: CounterReading | None = None
        self._returned: CounterReading | None = None
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @classmethod
    def probe(cls, command: str | None, period_ms: int) -> NvidiaEnergyCounter | None:
        """A counter when every GPU has one; None without nvidia-smi or on cards that cannot measure energy."""
        counters = energy_counters(command)
        if not counters or any(counter is None for counter in counters):
            return None
        return cls(command, len(counters), period_ms)  # type: ignore[arg-type]

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                self.command,
                "--query-gpu=total_energy_consumption",
                "--format=csv,noheader,nounits",
                f"--loop-ms={self.period_ms}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._follow, args=(self._process,), name="nvidia-energy", daemon=True).start()

    def _follow(self, process: subprocess.Popen) -> None:
        group: list[float] = []
        at = 0.0
        for line in process.stdout:  # type: ignore[union-attr]
            value = smi_number(line.strip())
            if value is None:
                group = []  # a card stopped reporting: skip this round rather than sum part of it
                continue
            if not group:
                at = time.monotonic()
            group.append(value)
            if len(group) == self.gpus:
                with self._lock:
                    self._latest = CounterReading(at, sum(group))
                group = []

    def read(self) -> CounterReading | None:
        """The newest reading, once: None until nvidia-smi has printed a new one."""
        with self._lock:
            latest = self._latest
        if latest is None or latest is self._returned:
            return None
        self._returned = latest
        return latest

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
