"""`manage.py monitor` samples board power in a thread beside the sampler, stores idle power, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from monitor.collectors.jetson import JetsonCollector
from monitor.collectors.llama import LlamaCollector
from monitor.management.commands.monitor import Command
from monitor.models import IdlePower, Sample
from monitor.power import PowerSampler, board_power_source
from monitor.sampler import Sampler
from monitor.tests.jetson_tree import fake_nvpmodel, orin_nano_jetpack6


def power_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "power-sampler"]


@pytest.mark.django_db(transaction=True)
async def test_it_samples_power_beside_the_sampler_and_stops_on_sigterm(
    tmp_path: Path, thread_connections_closed: None
) -> None:
    sys, proc, etc = orin_nano_jetpack6(tmp_path)
    power = PowerSampler(board_power_source(sys, None, 100), hz=10, idle_min=0.2)
    collectors = [JetsonCollector(sys, proc, etc, nvpmodel=fake_nvpmodel(tmp_path, "15W"))]
    sampler = Sampler("power-node", collectors, LlamaCollector(timeout=1), backends=list, power=power)
    command = Command()
    running = asyncio.create_task(command.run(sampler, interval=0.2))

    def latest() -> Sample | None:
        return Sample.objects.filter(node__name="power-node").order_by("-time").first()

    sample = None
    for _ in range(200):
        sample = await sync_to_async(latest)()
        if (sample and (sample.detail["power"].get("sampler") or {}).get("idle_mw")) or running.done():
            break
        await asyncio.sleep(0.05)
    assert not running.done(), "the sampler loop ended by itself"
    assert power_threads(), "no power thread beside the sampler"
    # The sample has the board total and where it comes from, and the fast sampler's own figures.
    assert sample is not None
    assert sample.power_mw == 17500.0
    assert sample.detail["power"]["total_source"] == "VDD_IN"
    assert sample.detail["power"]["sampler"]["source"] == "VDD_IN"
    assert sample.detail["power"]["sampler"]["mw"] == 17500.0
    assert sample.detail["power"]["sampler"]["power_mode"] == "15W"
    assert power.ticks > 0

    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running, timeout=30)
    assert not power_threads()
    # What was measured outlives the process, for this node and this power mode.
    stored = await sync_to_async(IdlePower.objects.get)(node__name="power-node")
    assert stored.power_mode == "15W"
    assert stored.mw == pytest.approx(17500.0, rel=0.01)
