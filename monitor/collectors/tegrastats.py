"""tegrastats output: a parser for one line (any JetPack) and a collector that reads the last line of its log."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

from monitor.collectors.rails import total_power

MB = 1024 * 1024
STALE_AFTER = 30.0  # seconds; an older log means tegrastats has stopped, and old figures would mislead

_TIME = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
# Load and clock each come and go: "3%@2133", "0%" without root, "@4266" with no load figure.
_EMC = re.compile(r"\bEMC_FREQ (?:(\d+)%)?(?:@(\d+))?")
# The GPU clock is bare on older releases, in brackets (one per GPC) on newer ones, absent without root; Thor
# prints the per-GPC clocks alone ("GR3D_FREQ @[314,314,314]").
_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@(\[)?([\d,]+)\]?)?")
_TEMP = re.compile(r"(?<![\w%])([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
# Rails are "NAME cur/avg" (bare numbers on JetPack 4, mW since), and "NAME cur/avg/max" on JetPack 7. The average
# and maximum run since tegrastats started: they are kept under names that say so, and never used for energy.
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")


def parse(line: str) -> dict:
    """The figures of one tegrastats line in the sample dict's shape; fields it does not know are skipped."""
    result: dict = {}
    if match := _TIME.search(line):
        result["tegrastats_time"] = datetime.strptime(match[1], "%m-%d-%Y %H:%M:%S").isoformat()
    memory: dict = {}
    if match := _RAM.search(line):
        memory.update(used=int(match[1]) * MB, total=int(match[2]) * MB)
    if match := _SWAP.search(line):
        memory.update(swap_used=int(match[1]) * MB, swap_total=int(match[2]) * MB)
    if memory:
        result["memory"] = memory
    if match := _CPU.search(line):
        cores = []
        for item in match[1].split(","):
            core = _CORE.match(item.strip())
            # "off" is a core the power mode has switched off.
            cores.append(
                {"percent": float(core[1]), "mhz": int(core[2]) if core[2] else None}
                if core
                else {"percent": None, "mhz": None}
            )
        online = [core["percent"] for core in cores if core["percent"] is not None]
        result["cpu"] = {
            "percent": round(sum(online) / len(online), 1) if online else None,
            "count": len(cores),
            "cores": cores,
        }
    gpu: dict = {}
    if match := _GR3D.search(line):
        if match[1] is not None:
            gpu["percent"] = float(match[1])
        if match[3]:
            clocks = [int(mhz) for mhz in match[3].split(",") if mhz]
            gpu["mhz"] = max(clocks)
            if match[2]:
                gpu["gpc_mhz"] = clocks
    if match := _EMC.search(line):
        if match[1] is not None:
            gpu["emc_percent"] = float(match[1])
        if match[2]:
            gpu["emc_mhz"] = int(match[2])
    if gpu:
        result["gpu"] = gpu
    # -256 °C marks an offline sensor.
    temps = {name: float(value) for name, value in _TEMP.findall(line) if float(value) > -40}
    if temps:
        result["temperatures"] = temps
    rails = {}
    for name, cur, avg, peak in _RAIL.findall(line):
        if name == "NC":  # an unconnected channel (AGX Orin prints two)
            continue
        rails[name] = {"mw": float(cur), "avg_since_start_mw": float(avg)}
        if peak:
            rails[name]["max_since_start_mw"] = float(peak)
    if rails:
        total_mw, source = total_power(rails)
        result["power"] = {"total_mw": total_mw, "total_source": source, "rails": rails}
    return result


class TegrastatsCollector:
    """Reads the newest line of the file `tegrastats --logfile PATH` appends to."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path

    def collect(self) -> dict:
        try:
            if time.time() - self.log_path.stat().st_mtime > STALE_AFTER:
                return {}
            with self.log_path.open("rb") as log:
                size = log.seek(0, 2)
                log.seek(max(size - 4096, 0))
                tail = log.read().decode(errors="replace")
        except OSError:
            return {}
        if not tail.endswith("\n"):
            tail = tail.rpartition("\n")[0]  # the last line is still being written
        lines = [line for line in tail.splitlines() if line.strip()]
        return parse(lines[-1]) if lines else {}
