"""Linux figures through psutil and sysfs: CPU per core, load, RAM, swap, disks, network rates, temperatures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from monitor.collectors import files


class LinuxCollector:
    """Keeps the previous network counters so that each sample carries rates, not totals."""

    def __init__(self, disks: list[str], sys_root: Path) -> None:
        self.disks = disks
        self.sys_root = sys_root
        self._net: tuple[float, dict[str, tuple[int, int]]] | None = None
        # psutil measures CPU busy time since the previous call; the first call only sets the start.
        psutil.cpu_percent(percpu=True)

    def collect(self) -> dict:
        return {
            "cpu": self.cpu(),
            "memory": self.memory(),
            "disks": self.disk_usage(),
            "network": self.network(),
            "temperatures": {**files.hwmon_temperatures(self.sys_root), **files.thermal_zones(self.sys_root)},
        }

    def cpu(self) -> dict:
        per_core = psutil.cpu_percent(percpu=True)
        try:
            freqs = psutil.cpu_freq(percpu=True) or []
        except (OSError, NotImplementedError):
            freqs = []
        cores = []
        for index, percent in enumerate(per_core):
            mhz = freqs[index].current if index < len(freqs) else None
            cores.append({"percent": round(percent, 1), "mhz": round(mhz) if mhz else None})
        return {
            "percent": round(sum(per_core) / len(per_core), 1) if per_core else None,
            "count": len(per_core),
            "cores": cores,
            "load": [round(value, 2) for value in os.getloadavg()],
        }

    def memory(self) -> dict:
        ram = psutil.virtual_memory()
        swap = psutil.swap_memory()
        return {
            "total": ram.total,
            "used": ram.total - ram.available,
            "available": ram.available,
            "percent": round(ram.percent, 1),
            "swap_total": swap.total,
            "swap_used": swap.used,
        }

    def disk_usage(self) -> list[dict]:
        disks = []
        for mount in self.disks:
            try:
                usage = psutil.disk_usage(mount)
            except OSError:
                continue  # not mounted right now (an unplugged NVMe): report the others
            disks.append(
                {
                    "mount": mount,
                    "total": usage.total,
                    "used": usage.used,
                    "free": usage.free,
                    "percent": round(usage.percent, 1),
                }
            )
        return disks

    def network(self) -> dict:
        now = time.monotonic()
        counters = {
            name: (nic.bytes_recv, nic.bytes_sent)
            for name, nic in psutil.net_io_counters(pernic=True).items()
            if name != "lo"
        }
        previous, self._net = self._net, (now, counters)
        if previous is None or now <= previous[0]:
            return {}
        elapsed = now - previous[0]
        interfaces = {}
        for name, (rx, tx) in counters.items():
            if name in previous[1]:
                old_rx, old_tx = previous[1][name]
                # Counters restart when an interface comes back up: count that interval as zero, not negative.
                interfaces[name] = {
                    "rx_bps": round(max(rx - old_rx, 0) / elapsed, 1),
                    "tx_bps": round(max(tx - old_tx, 0) / elapsed, 1),
                }
        return {
            "rx_bps": round(sum(nic["rx_bps"] for nic in interfaces.values()), 1),
            "tx_bps": round(sum(nic["tx_bps"] for nic in interfaces.values()), 1),
            "interfaces": interfaces,
        }
