"""What the fast power sampler costs: CPU time of its thread at ENERGY_SAMPLE_HZ, as % of one core.

Run: `.venv/bin/python bench/power_cost.py [seconds] [hz]` (default 20 s a round, 10 Hz). The sampler reads fake
sysfs trees laid out like a Jetson Orin Nano (one rail, VDD_IN, makes the total: two files a reading) and an AGX Orin
(the sum of four rails: eight files a reading), integrating as it does in `manage.py monitor`, while one request is
marked in flight (the virtual clock advances too). The baseline is the same process with no sampler running,
measured in the same run; the process's CPU time counts every thread. Nothing touches a database.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(seconds: float, sys_root: Path | None, hz: float) -> tuple[float, int]:
    """CPU seconds the process used over `seconds` of wall time with a sampler over `sys_root` (none: idle)."""
    from monitor.power import PowerSampler, board_power_source

    power = PowerSampler(board_power_source(sys_root, None, round(1000 / hz)), hz) if sys_root else None
    if power is not None:
        power.start()
        power.set_in_flight(1)
    started_cpu = cpu_seconds()
    time.sleep(seconds)
    used = cpu_seconds() - started_cpu
    ticks = 0
    if power is not None:
        ticks = power.ticks
        power.stop()
    return used, ticks


def main(seconds: float, hz: float) -> None:
    from monitor.tests.jetson_tree import agx_orin, orin_nano_jetpack6

    folder = Path(tempfile.mkdtemp(prefix="power-cost-"))
    try:
        trees = {
            "Orin Nano (VDD_IN)": orin_nano_jetpack6(folder / "nano")[0],
            "AGX Orin (sum of 4 rails)": agx_orin(folder / "agx")[0],
        }
        idle, _ = measure(seconds, None, hz)
        print(f"{'':28} {'CPU ms':>8} {'readings':>9} {'% of a core':>12} {'µs a reading':>13}")
        print(f"{'idle process':28} {idle * 1000:8.1f} {'':>9} {idle / seconds * 100:11.3f}%")
        for name, sys_root in trees.items():
            used, ticks = measure(seconds, sys_root, hz)
            above = max(used - idle, 0.0)
            print(
                f"{name:28} {used * 1000:8.1f} {ticks:9d} {used / seconds * 100:11.3f}%"
                f" {above / max(ticks, 1) * 1e6:13.0f}"
            )
        print(f"{hz:g} Hz for {seconds:g} s a round; the last column is above the idle process.")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.update(
        DJANGO_SETTINGS_MODULE="jetsonsite.settings",
        DEBUG="false",
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-" + "x" * 60),
        ALLOWED_HOSTS="localhost",
        REDIS_URL="",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0, float(sys.argv[2]) if len(sys.argv) > 2 else 10.0)
