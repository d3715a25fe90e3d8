"""Model and backend status for the Models page: registry rows, each backend probed, this process's in-flight count."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from gateway import routing, upstream
from gateway.models import LLMModel


def _registry() -> list[dict[str, Any]]:
    models = []
    for model in LLMModel.objects.prefetch_related("backends").order_by("model_id"):
        backends = [
            {"id": b.id, "url": b.base_url.rstrip("/"), "enabled": b.enabled, "api_key": b.api_key}
            for b in model.backends.all()
        ]
        models.append({"model_id": model.model_id, "kind": model.kind, "enabled": model.enabled, "backends": backends})
    return models


def _unknown(error: str = "") -> dict[str, Any]:
    return {"up": False, "latency_ms": None, "slots_busy": None, "slots_idle": None, "error": error}


async def probe(url: str, api_key: str) -> dict[str, Any]:
    """`/health` for up/down and latency, then `/slots` for busy/idle (absent when started without --slots)."""
    target = upstream.Target(url, api_key)
    result = _unknown()
    started = time.perf_counter()
    try:
        status, raw = await upstream.get(target, "/health", settings.HEALTH_TIMEOUT)
    except upstream.UpstreamError as exc:
        result["error"] = str(exc)
        return result
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if status != 200:
        result["error"] = _message(raw) or f"/health answered {status}"
        return result
    result["up"] = True
    try:
        status, raw = await upstream.get(target, "/slots", settings.HEALTH_TIMEOUT)
        slots = json.loads(raw) if status == 200 else None
    except (upstream.UpstreamError, ValueError):
        slots = None
    if isinstance(slots, list):
        busy = sum(1 for slot in slots if isinstance(slot, dict) and slot.get("is_processing"))
        result["slots_busy"], result["slots_idle"] = busy, len(slots) - busy
    return result


def _message(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error", {})
        return str(error.get("message", "")) if isinstance(error, dict) else ""
    except (ValueError, AttributeError):
        return ""


async def models_status() -> list[dict[str, Any]]:
    """Every model with its backends, probed concurrently; disabled backends are listed but not probed."""
    models = await sync_to_async(_registry)()
    backends = [b for m in models for b in m["backends"]]
    # Probe each URL once, even when several models share a backend.
    urls = {(b["url"], b["api_key"]) for b in backends if b["enabled"]}
    results = dict(zip(urls, await asyncio.gather(*(probe(url, key) for url, key in urls)), strict=True))
    for backend in backends:
        key = (backend["url"], backend.pop("api_key"))
        backend.update(results.get(key) or _unknown("disabled"))
        backend["in_flight"] = routing.in_flight(backend["id"])
    return models
