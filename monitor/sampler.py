"""The sampler: collect from every source, store one Sample row, publish it to the dashboard's channel group."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from gateway import upstream
from gateway.models import Backend, ModelState, Supervisor
from gateway.node.identity import node_name
from gateway.node.link import address_of, known_key, model_url
from gateway.node.models import NodeAdmission
from gateway.outage import RedisOutage
from monitor.collectors.jetson import JetsonCollector
from monitor.collectors.linux import LinuxCollector
from monitor.collectors.llama import LlamaCollector, PolledBackend
from monitor.collectors.nvidia import NvidiaCollector
from monitor.collectors.tegrastats import TegrastatsCollector
from monitor.models import Node, Sample
from monitor.power import PowerSampler

log = logging.getLogger(__name__)

GROUP = "metrics"


class Collector(Protocol):
    def collect(self) -> dict: ...


def default_collectors() -> list[Collector]:
    sys_root, proc_root = Path(settings.MONITOR_SYS_ROOT), Path(settings.MONITOR_PROC_ROOT)
    collectors: list[Collector] = [
        LinuxCollector(settings.MONITOR_DISKS, sys_root),
        JetsonCollector(sys_root, proc_root, Path(settings.MONITOR_ETC_ROOT)),
        NvidiaCollector(),
    ]
    if settings.MONITOR_TEGRASTATS_LOG:
        # Last, so that an operator's tegrastats figures win over what sysfs gave.
        collectors.append(TegrastatsCollector(Path(settings.MONITOR_TEGRASTATS_LOG)))
    return collectors


def merge(into: dict, part: dict) -> dict:
    """Nested update: later sources add to or override earlier ones key by key."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def _first(*values: object) -> object:
    return next((value for value in values if value is not None), None)


def headline(data: dict) -> dict:
    """The typed columns of a Sample, from the merged detail."""
    cpu, memory, gpu = data.get("cpu", {}), data.get("memory", {}), data.get("gpu", {})
    gpus = data.get("gpus", [])
    gpu_loads = [card["percent"] for card in gpus if card.get("percent") is not None]
    gpu_memory = [card["memory_used"] for card in gpus if card.get("memory_used") is not None]
    gpu_power = [card["power_mw"] for card in gpus if card.get("power_mw") is not None]
    temps = list(data.get("temperatures", {}).values())
    backends = data.get("backends", [])
    busy = [backend["slots_busy"] for backend in backends if "slots_busy" in backend]
    load = cpu.get("load") or [None]
    return {
        "cpu_percent": cpu.get("percent"),
        "load_1": load[0],
        "ram_used": memory.get("used"),
        "ram_total": memory.get("total"),
        "swap_used": memory.get("swap_used"),
        # A Jetson's integrated GPU first; otherwise the busiest discrete card.
        "gpu_percent": _first(gpu.get("percent"), max(gpu_loads) if gpu_loads else None),
        "gpu_mem_used": _first(memory.get("gpu_shared"), sum(gpu_memory) if gpu_memory else None),
        "power_mw": _first(data.get("power", {}).get("total_mw"), sum(gpu_power) if gpu_power else None),
        "temp_max": max(temps) if temps else None,
        "net_rx_bps": data.get("network", {}).get("rx_bps"),
        "net_tx_bps": data.get("network", {}).get("tx_bps"),
        "slots_busy": sum(busy) if busy else None,
    }


def enabled_backends() -> list[PolledBackend]:
    """Every enabled external backend, and every managed one that is running (at its node's supervisor's host)."""
    rows = Backend.objects.filter(enabled=True, model__enabled=True, managed=False).values_list(
        "base_url", "model__model_id", "api_key"
    )
    polled = [PolledBackend(upstream.Target(url.rstrip("/"), api_key), model) for url, model, api_key in rows]
    supervisors = {s.node: address_of(s) for s in Supervisor.objects.all()}
    running = Backend.objects.filter(enabled=True, model__enabled=True, managed=True, runtime__state=ModelState.READY)
    for backend, node, port, model in running.values_list("id", "node", "runtime__port", "model__model_id"):
        if node in supervisors and port:
            # Its key is its supervisor's to give: known once this process is linked to it (monitor.energy).
            target = upstream.Target(model_url(supervisors[node], port), known_key(backend))
            polled.append(PolledBackend(target, model))
    return polled


class Sampler:
    """Single steps (collect, store, publish) that the command loops over and tests call one by one."""

    def __init__(
        self,
        name: str | None = None,
        collectors: list[Collector] | None = None,
        llama: LlamaCollector | None = None,
        backends: Callable[[], list[PolledBackend]] = enabled_backends,
        power: PowerSampler | None = None,
    ) -> None:
        self.name = name or node_name()
        self.collectors = default_collectors() if collectors is None else collectors
        self.llama = llama or LlamaCollector(settings.MONITOR_BACKEND_TIMEOUT)
        self.backends = backends
        # The fast power sampler running beside this one; its newest figures go into each sample.
        self.power = power
        self.node: Node | None = None
        self.live_metrics = RedisOutage("Live metrics", "they pause until Redis is back (samples are stored)", log)

    def collect_system(self) -> dict:
        data: dict = {}
        for collector in self.collectors:
            try:
                merge(data, collector.collect())
            except Exception:
                # A source that breaks loses its own figures, never the whole sample.
                log.exception("collector %s failed", type(collector).__name__)
        if self.power is not None and (snapshot := self.power.snapshot()):
            merge(data, {"power": {"sampler": snapshot}})
        return data

    async def collect(self) -> dict:
        polled = await sync_to_async(self.backends)()
        # The sysfs/psutil reads block: keep them off the loop while the backends are polled.
        system, backends = await asyncio.gather(
            asyncio.to_thread(self.collect_system), self.llama.collect(polled), return_exceptions=True
        )
        data = system if isinstance(system, dict) else {}
        if isinstance(system, BaseException):
            log.error("system collectors failed: %r", system)
        if isinstance(backends, dict):
            merge(data, backends)
        else:
            log.error("backend poll failed: %r", backends)
        return data

    def store(self, data: dict) -> Sample:
        data = dict(data)
        board = data.pop("board", {})
        now = timezone.now()
        if self.node is None:
            self.node, _ = Node.objects.get_or_create(name=self.name)
        facts = {
            "board_model": board.get("model") or self.node.board_model,
            "l4t_release": board.get("l4t_release") or self.node.l4t_release,
            "power_mode": board.get("power_mode") or self.node.power_mode,
        }
        changed = [field for field, value in facts.items() if getattr(self.node, field) != value]
        for field, value in facts.items():
            setattr(self.node, field, value)
        self.node.last_seen = now
        self.node.save(update_fields=["last_seen", *changed])
        # Readers show the admission state this sampler decided as stale once its samples stop.
        NodeAdmission.objects.heard_from(self.name, now)
        sample = Sample(node=self.node, time=now, detail=data, **headline(data))
        sample.save()
        return sample

    async def publish(self, sample: Sample) -> None:
        """Send the sample to the dashboards; while Redis is unreachable live metrics pause (the sample is stored)."""
        layer = get_channel_layer()
        if layer is not None:
            message = {"type": "metrics.sample", "sample": sample.to_dict()}
            await self.live_metrics.attempt(functools.partial(layer.group_send, GROUP, message))

    async def step(self) -> Sample:
        data = await self.collect()
        sample = await sync_to_async(self.store)(data)
        await self.publish(sample)
        return sample

    async def aclose(self) -> None:
        await self.llama.aclose()
