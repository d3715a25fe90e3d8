"""A backend probed one way, for /health, the dashboard's Models page and the sampler alike: llama-server's /health,
/slots and /metrics asked at once, through gateway.upstream (the only module that talks to backends)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from gateway import upstream

PATHS = ("/health", "/slots", "/metrics")
# llama-server's Prometheus names, and the names the probe gives them.
COUNTERS = {
    "llamacpp:prompt_tokens_total": "prompt_tokens_total",
    "llamacpp:tokens_predicted_total": "predicted_tokens_total",
    "llamacpp:requests_processing": "requests_processing",
    "llamacpp:requests_deferred": "requests_deferred",
}


@dataclass
class Probe:
    """A backend's health: "ok", "loading" (503 while the model loads) or "down"; and its figures where it gives
    them (/slots and /metrics each need their own flag, --slots and --metrics)."""

    status: str
    latency_ms: float | None = None
    slots: tuple[int, int] | None = None  # (busy, idle)
    counters: dict[str, float] = field(default_factory=dict)  # by the names of COUNTERS
    error: str = ""


def count_slots(raw: bytes) -> tuple[int, int] | None:
    """(busy, idle) from a llama-server /slots answer, or None when it is not a list of slots."""
    try:
        slots = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(slots, list):
        return None
    busy = sum(1 for slot in slots if isinstance(slot, dict) and slot.get("is_processing"))
    return busy, len(slots) - busy


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


def _body(answer: tuple[int, bytes] | BaseException) -> bytes | None:
    """The body of an answer 200, else None: a figure that fails only stays unknown."""
    if isinstance(answer, BaseException) or answer[0] != 200:
        return None
    return answer[1]


async def probe(target: upstream.Target, timeout: float) -> Probe:
    """/health, /slots and /metrics at once, each within `timeout`; the latency is that of all three."""
    started = time.perf_counter()
    health, slots, metrics = await asyncio.gather(
        *(upstream.get(target, path, timeout) for path in PATHS), return_exceptions=True
    )
    if isinstance(health, BaseException):
        if not isinstance(health, upstream.UpstreamError):
            raise health
        return Probe("down", error=str(health))
    status, raw = health
    result = Probe("ok" if status == 200 else "loading" if status == 503 else "down")
    result.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    if status != 200:
        result.error = upstream.answer_message(status, raw)
    if (body := _body(slots)) is not None:
        result.slots = count_slots(body)
    if (body := _body(metrics)) is not None:
        result.counters = parse_metrics(body.decode(errors="replace"))
    return result
