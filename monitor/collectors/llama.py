"""llama-server backends in each sample: up or not, slots busy and idle, token counters; every backend probed at once
(monitor.operations.probe)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway import upstream
from monitor.operations.probe import Probe, probe


@dataclass(frozen=True)
class PolledBackend:
    """A backend the sampler polls: where it answers, and the model it serves there."""

    target: upstream.Target
    model: str = ""


def _figures(backend: PolledBackend, probed: Probe) -> dict:
    figures: dict = {"url": backend.target.base_url, "model": backend.model, "ok": probed.status == "ok"}
    if probed.slots is not None:
        figures.update(slots_busy=probed.slots[0], slots_idle=probed.slots[1])
    figures.update(probed.counters)
    if probed.error:
        figures["error"] = probed.error
    return figures


class LlamaCollector:
    """Polls every backend at once through the gateway's pooled client, each with the same short timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def aclose(self) -> None:
        await upstream.close_sessions()

    async def collect(self, backends: list[PolledBackend]) -> dict:
        if not backends:
            return {}
        probes = await asyncio.gather(*(probe(backend.target, self.timeout) for backend in backends))
        return {"backends": [_figures(backend, probed) for backend, probed in zip(backends, probes, strict=True)]}
