"""The node's memory for models, read again at every decision, and what a running llama-server really holds.

Budget: MODEL_MEMORY_BUDGET_MB when set; on a discrete NVIDIA card the GPU's free memory when the supervisor starts
(nvidia-smi); otherwise (unified memory: a Jetson, whose CUDA free-memory figure is wrong, or a CPU-only machine)
none of its own. On unified memory the budget is also capped, at each decision, by what the models could hold now:
MemAvailable less MODEL_MEMORY_RESERVE_MB, plus what the supervisor's own processes hold (MemAvailable already
leaves them out). A camera pipeline, ROS or a browser that takes memory shrinks it; when they let go it grows back.

Measured: llama-server logs the size of every buffer it allocates (`-lv 4`); host buffers (CPU, CPU_Mapped,
CUDA_Host, …) live in the process's resident memory, device buffers (CUDA0 …) do not, so a model holds its peak
resident size (VmHWM) plus its device buffers.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from gateway.lifecycle.machine import Cap
from gateway.node.host import meminfo, nvidia_gpus

MIB = 1024 * 1024
KIB = 1024
# "load_tensors:   CPU_Mapped model buffer size =   235.16 MiB", "llama_kv_cache:  CUDA0 KV buffer size = 6.00 MiB"
BUFFER_LINE = re.compile(r"\b(\S+)\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([\d.]+)\s*MiB")


def cap() -> Cap:
    """The budget's configured part, decided once when the supervisor starts."""
    if settings.MODEL_MEMORY_BUDGET_MB:
        return Cap(int(settings.MODEL_MEMORY_BUDGET_MB * MIB), True, "MODEL_MEMORY_BUDGET_MB")
    if not (Path(settings.MONITOR_ETC_ROOT) / "nv_tegra_release").exists():
        cards = nvidia_gpus(shutil.which("nvidia-smi"))
        free = [
            gpu["memory_total"] - gpu["memory_used"]
            for gpu in cards
            if gpu["memory_total"] and gpu["memory_used"] is not None
        ]
        if free:
            return Cap(sum(free), False, f"free memory of {len(free)} NVIDIA GPU(s) (nvidia-smi)")
    return Cap(None, True, f"MemAvailable - reserve {settings.MODEL_MEMORY_RESERVE_MB} MiB (unified memory)")


def available_for_models(pids: Iterable[int]) -> int | None:
    """What the models could hold now: MemAvailable less the reserve, plus what our processes hold already."""
    available = meminfo(Path(settings.MONITOR_PROC_ROOT)).get("MemAvailable")
    if available is None:
        return None
    ours = sum(resident(pid) or 0 for pid in pids)
    return max(available - settings.MODEL_MEMORY_RESERVE_MB * MIB + ours, 0)


def _status(pid: int, name: str) -> int | None:
    """A size field of /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(name.encode() + b":"):
                    return int(line.split()[1]) * KIB
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident(pid: int) -> int | None:
    return _status(pid, "VmRSS")


def peak_resident(pid: int) -> int | None:
    """The most the process has held resident since it started (VmHWM): what a budget must cover."""
    return _status(pid, "VmHWM")


def oom_kills() -> int:
    """The kernel's count of processes its OOM killer has killed since boot (/proc/vmstat), 0 when unreadable."""
    try:
        with open(Path(settings.MONITOR_PROC_ROOT) / "vmstat", "rb") as vmstat:
            for line in vmstat:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


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
