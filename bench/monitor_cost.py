"""What the sampler costs: CPU time of collect + store + publish at a 1 s interval, as % of one core.

Run: `.venv/bin/python bench/monitor_cost.py [seconds] [llama-server URL ...]` (default 20 s, no backends). It uses
a throw-away SQLite database in a temporary folder, the real collectors of this machine, and polls the given
llama-server backends as the sampler polls the registry's. An idle loop with the same sleeps runs first in the same
process as the baseline.
"""

from __future__ import annotations

import asyncio
import logging
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


async def measure(seconds: float, step: object | None) -> tuple[float, int]:
    """CPU seconds used over `seconds` of wall time, ticking once a second, and the number of ticks."""
    started_cpu, started = cpu_seconds(), time.monotonic()
    ticks = 0
    while time.monotonic() - started < seconds:
        tick = time.monotonic()
        if step is not None:
            await step()  # type: ignore[operator]
        ticks += 1
        await asyncio.sleep(max(1.0 - (time.monotonic() - tick), 0))
    return cpu_seconds() - started_cpu, ticks


async def main(seconds: float, backends: list[str]) -> None:
    from gateway.upstream import Target
    from monitor.collectors.llama import PolledBackend
    from monitor.sampler import Sampler

    logging.getLogger("httpx").setLevel(logging.WARNING)  # as the monitor command does
    sampler = Sampler("bench", backends=lambda: [PolledBackend(Target(url), "bench") for url in backends])
    await asyncio.to_thread(sampler.collect_system)  # the same warm-up the command does
    idle_cpu, idle_ticks = await measure(seconds, None)
    busy_cpu, ticks = await measure(seconds, sampler.step)
    await sampler.aclose()
    print(
        f"idle loop:   {idle_cpu * 1000:7.1f} ms CPU over {idle_ticks} ticks = {idle_cpu / seconds * 100:.2f}% of one core"
    )
    print(
        f"sampler 1 s: {busy_cpu * 1000:7.1f} ms CPU over {ticks} samples = {busy_cpu / seconds * 100:.2f}% of one core"
    )
    print(f"backends polled: {len(backends)}")
    print(f"per sample:  {(busy_cpu - idle_cpu) / ticks * 1000:.1f} ms above the idle loop")


if __name__ == "__main__":
    folder = Path(tempfile.mkdtemp(prefix="monitor-cost-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="jetsonsite.settings",
        DEBUG="false",
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-" + "x" * 60),
        ALLOWED_HOSTS="localhost",
        VAR_DIR=str(folder),
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        REDIS_URL="",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0, sys.argv[2:]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
