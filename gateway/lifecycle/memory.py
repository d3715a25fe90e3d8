"""The node's memory budget for models, and what a running llama-server really uses.

Budget: MODEL_MEMORY_BUDGET_MB when set; on a discrete NVIDIA card the GPU's free memory (nvidia-smi); otherwise
(unified memory: a Jetson, whose CUDA free-memory figure is wrong, or a CPU-only machine) MemAvailable minus
MODEL_MEMORY_RESERVE_MB. It is measured once, when the supervisor starts, before it starts any model.

Measured: llama-server logs the size of every buffer it allocates (`-lv 4`); host buffers (CPU, CPU_Mapped,
CUDA_Host, …) live in the process's RSS, device buffers (CUDA0 …) do not, so a model uses RSS + device buffers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.conf import settings

from monitor.collectors.files import meminfo
from monitor.collectors.nvidia import NvidiaCollector

MIB = 1024 * 1024
# "load_tensors:   CPU_Mapped model buffer size =   235.16 MiB", "llama_kv_cache:  CUDA0 KV buffer size = 6.00 MiB"
BUFFER_LINE = re.compile(r"\b(\S+)\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([\d.]+)\s*MiB")


@dataclass(frozen=True)
class Budget:
    total: int
    source: str


def node_budget() -> Budget:
    if settings.MODEL_MEMORY_BUDGET_MB:
        return Budget(int(settings.MODEL_MEMORY_BUDGET_MB * MIB), "MODEL_MEMORY_BUDGET_MB")
    if not (Path(settings.MONITOR_ETC_ROOT) / "nv_tegra_release").exists():
        cards = NvidiaCollector().collect().get("gpus") or []
        free = [
            gpu["memory_total"] - gpu["memory_used"]
            for gpu in cards
            if gpu["memory_total"] and gpu["memory_used"] is not None
        ]
        if free:
            return Budget(sum(free), f"free memory of {len(free)} NVIDIA GPU(s) (nvidia-smi)")
    available = meminfo(Path(settings.MONITOR_PROC_ROOT)).get("MemAvailable", 0)
    reserve = settings.MODEL_MEMORY_RESERVE_MB * MIB
    return Budget(
        max(available - reserve, 0),
        f"MemAvailable {available // MIB} MiB - reserve {reserve // MIB} MiB (unified memory)",
    )


@dataclass(frozen=True)
class Buffers:
    """A llama-server's allocations as its log reports them, in bytes."""

    host: int
    device: int
    by_kind: dict[str, int]  # "model", "KV", "compute", "output"
    by_buffer: dict[str, int]  # "CPU_Mapped model", "CUDA0 KV", …

    @property
    def total(self) -> int:
        return self.host + self.device


def _is_host(device: str) -> bool:
    return device.startswith("CPU") or device.endswith("_Host")


def parse_buffers(log_text: str) -> Buffers | None:
    """The buffers of the last load in a llama-server log, or None when it shows none.

    A model's log holds every start of it, and llama.cpp's memory-fitting dry run (`--fit on`) logs a round of
    buffers before the real one: a model buffer after other kinds starts a new round.
    """
    host = device = 0
    by_kind: dict[str, int] = {}
    by_buffer: dict[str, int] = {}
    previous = ""
    for line in log_text.splitlines():
        match = BUFFER_LINE.search(line)
        if not match:
            continue
        name, kind, size = match.group(1), match.group(2), int(float(match.group(3)) * MIB)
        if kind == "model" and previous not in ("", "model"):
            host = device = 0
            by_kind, by_buffer = {}, {}
        previous = kind
        by_kind[kind] = by_kind.get(kind, 0) + size
        by_buffer[f"{name} {kind}"] = by_buffer.get(f"{name} {kind}", 0) + size
        if _is_host(name):
            host += size
        else:
            device += size
    return Buffers(host, device, by_kind, by_buffer) if by_kind else None


def process_rss(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.Error, OSError):
        return None


def measured_use(pid: int, log_text: str) -> int | None:
    """What a ready llama-server uses: its RSS plus the device buffers its log reports."""
    rss = process_rss(pid)
    if rss is None:
        return None
    buffers = parse_buffers(log_text)
    return rss + (buffers.device if buffers else 0)
