"""`manage.py monitor` samples on its interval and stops cleanly on SIGTERM, or with an error when its admission loop
dies."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from monitor.collectors import files
from monitor.collectors.linux import LinuxCollector
from monitor.collectors.llama import LlamaCollector
from monitor.management.commands.monitor import Command
from monitor.models import Sample
from monitor.sampler import Sampler


@pytest.mark.django_db(transaction=True)
async def test_it_stops_on_sigterm(tmp_path: Path, thread_connections_closed: None) -> None:
    command = Command()
    sampler = Sampler("sigterm-node", [LinuxCollector(["/"], tmp_path)], LlamaCollector(timeout=1), backends=list)
    running = asyncio.create_task(command.run(sampler, interval=0.05))
    count = sync_to_async(Sample.objects.filter(node__name="sigterm-node").count)
    for _ in range(400):
        if await count() >= 2 or running.done():
            break
        await asyncio.sleep(0.05)
    assert not running.done(), "the sampler loop ended by itself"
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running, timeout=30)
    assert command.shutdown is True
    assert await count() >= 2
    # The handler is gone with the loop: SIGTERM means the default again.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.django_db(transaction=True)
async def test_it_stops_when_its_admission_loop_dies(
    tmp_path: Path, thread_connections_closed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(sys_root: Path) -> dict[str, float]:
        raise RuntimeError("a bug in the admission loop")

    monkeypatch.setattr(files, "thermal_zones", broken)
    command = Command()
    sampler = Sampler("broken-node", [LinuxCollector(["/"], tmp_path)], LlamaCollector(timeout=1), backends=list)
    # Not sampling on as if all were well: it stops, and `handle` then exits with an error (systemd restarts it).
    await asyncio.wait_for(command.run(sampler, interval=0.05), timeout=15)
    assert command.watch_failed


@pytest.mark.django_db(transaction=True)
def test_it_takes_one_sample_with_once(settings: object) -> None:
    settings.MONITOR_NODE_NAME = "once-node"  # type: ignore[attr-defined]
    call_command("monitor", "--once", "--interval", "0.1", stdout=open(os.devnull, "w"))  # noqa: SIM115
    sample = Sample.objects.get(node__name="once-node")
    assert sample.ram_total is not None and sample.cpu_percent is not None
