"""llama-server backends: slots busy and idle from /slots, token counters from /metrics, all polled at once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp

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


@dataclass
class Reply:
    status: int
    text: str


class LlamaCollector:
    """One pooled HTTP session for the sampler's lifetime; each backend gets the same short timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def collect(self, targets: list[Target]) -> dict:
        if not targets:
            return {}
        if self.session is None:
            # aiohttp binds a session to the running loop, so it is made on first use, not in __init__.
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        backends = await asyncio.gather(*(self.poll(self.session, target) for target in targets))
        return {"backends": list(backends)}

    async def poll(self, session: aiohttp.ClientSession, target: Target) -> dict:
        base = target.url.rstrip("/")
        headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
        result: dict = {"url": base, "model": target.model, "ok": False}
        slots, metrics = await asyncio.gather(
            _get(session, f"{base}/slots", headers), _get(session, f"{base}/metrics", headers), return_exceptions=True
        )
        # /slots and /metrics each need their own flag (--slots, --metrics): either may answer 501 alone.
        if isinstance(slots, Reply) and slots.status == 200:
            try:
                entries = json.loads(slots.text)
            except ValueError:
                entries = None
            if isinstance(entries, list):
                busy = sum(1 for slot in entries if isinstance(slot, dict) and slot.get("is_processing"))
                result.update(ok=True, slots_busy=busy, slots_idle=len(entries) - busy)
        if isinstance(metrics, Reply) and metrics.status == 200:
            result.update(ok=True, **parse_metrics(metrics.text))
        if not result["ok"]:
            failure = slots if isinstance(slots, BaseException) else metrics
            result["error"] = type(failure).__name__ if isinstance(failure, BaseException) else f"HTTP {failure.status}"
        return result


async def _get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Reply:
    async with session.get(url, headers=headers) as response:
        return Reply(response.status, await response.text())
