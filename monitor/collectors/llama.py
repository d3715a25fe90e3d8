"""llama-server backends: slots busy and idle from /slots, token counters from /metrics, all polled at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway import upstream

# llama-server's Prometheus names, and the keys they get in the sample.
COUNTERS = {
    "llamacpp:prompt_tokens_total": "prompt_tokens_total",
    "llamacpp:tokens_predicted_total": "predicted_tokens_total",
    "llamacpp:requests_processing": "requests_processing",
    "llamacpp:requests_deferred": "requests_deferred",
}


@dataclass(frozen=True)
class Target:
    url: str
    model: str = ""
    api_key: str = ""


def parse_metrics(text: str) -> dict[str, float]:
    """The counters this module knows from a Prometheus text page; other lines are skipped."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if name in COUNTERS:
            try:
                found[COUNTERS[name]] = float(value.split()[0])
            except (ValueError, IndexError):
                continue
    return found


class LlamaCollector:
    """Polls every backend at once through the gateway's pooled client, each with the same short timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def aclose(self) -> None:
        await upstream.close_sessions()

    async def collect(self, targets: list[Target]) -> dict:
        if not targets:
            return {}
        backends = await asyncio.gather(*(self.poll(target) for target in targets))
        return {"backends": list(backends)}

    async def poll(self, target: Target) -> dict:
        backend = upstream.Target(target.url.rstrip("/"), target.api_key)
        result: dict = {"url": backend.base_url, "model": target.model, "ok": False}
        slots, metrics = await asyncio.gather(
            upstream.get(backend, "/slots", self.timeout),
            upstream.get(backend, "/metrics", self.timeout),
            return_exceptions=True,
        )
        # /slots and /metrics each need their own flag (--slots, --metrics): either may answer 501 alone.
        if not isinstance(slots, BaseException) and slots[0] == 200:
            counted = upstream.count_slots(slots[1])
            if counted is not None:
                result.update(ok=True, slots_busy=counted[0], slots_idle=counted[1])
        if not isinstance(metrics, BaseException) and metrics[0] == 200:
            result.update(ok=True, **parse_metrics(metrics[1].decode(errors="replace")))
        if not result["ok"]:
            failure = slots if isinstance(slots, BaseException) else metrics
            if isinstance(failure, BaseException):
                result["error"] = type(failure.__cause__ or failure).__name__
            else:
                result["error"] = f"HTTP {failure[0]}"
        return result
