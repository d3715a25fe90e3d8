"""Model and backend status for the Models and Chat pages: registry rows, each backend probed (and whether its GGUF
has its own chat template), this process's in-flight count."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Prefetch

from gateway import ggufinfo, routing, upstream
from gateway.models import Backend, LLMModel
from monitor.operations.probe import probe


def _backend(backend: Backend) -> dict[str, Any]:
    if backend.managed:  # no URL to probe: its state is on the page's managed-models table
        state = getattr(backend, "runtime", None)
        return {"id": backend.id, "url": f"managed on {backend.node}", "enabled": backend.enabled,
                "managed": True, "state": state.state if state else "stopped", "gguf": backend.gguf_path}  # fmt: skip
    return {
        "id": backend.id,
        "url": backend.base_url.rstrip("/"),
        "enabled": backend.enabled,
        "api_key": backend.api_key,
    }


def _registry() -> list[dict[str, Any]]:
    models = []
    backends_with_state = Prefetch("backends", Backend.objects.select_related("runtime"))
    for model in LLMModel.objects.prefetch_related(backends_with_state).order_by("model_id"):
        backends = [_backend(b) for b in model.backends.all()]
        models.append({"model_id": model.model_id, "kind": model.kind, "prompt_format": model.prompt_format,
                       "enabled": model.enabled, "backends": backends})  # fmt: skip
    return models


def _unknown(error: str = "") -> dict[str, Any]:
    return {"up": False, "latency_ms": None, "slots_busy": None, "slots_idle": None, "error": error,
            "chat_template": None, "chat_template_detail": ""}  # fmt: skip


async def _probed(url: str, api_key: str) -> dict[str, Any]:
    """Health and slots; and, at the same time, whether its GGUF has its own chat template (None: unknown)."""
    result, template = await asyncio.gather(
        probe(upstream.Target(url, api_key), settings.HEALTH_TIMEOUT), ggufinfo.backend_check(url, api_key)
    )
    busy, idle = result.slots if result.status == "ok" and result.slots else (None, None)
    return {
        "up": result.status == "ok",
        "latency_ms": result.latency_ms,
        "slots_busy": busy,
        "slots_idle": idle,
        "error": result.error,
        "chat_template": template.has_template,
        "chat_template_detail": template.detail,
    }


async def _managed(backend: dict[str, Any]) -> None:
    """A managed backend serves while enabled (it loads on demand); its GGUF is read here for its chat template."""
    template = await asyncio.to_thread(ggufinfo.file_check, backend.pop("gguf"))
    backend.update(_unknown(f"managed: {backend.pop('state')}"), up=backend["enabled"])
    backend.update(chat_template=template.has_template, chat_template_detail=template.detail)


async def models_status() -> list[dict[str, Any]]:
    """Every model with its backends, probed concurrently; disabled backends are listed but not probed."""
    models = await sync_to_async(_registry)()
    backends = [b for m in models for b in m["backends"]]
    # Probe each URL once, even when several models share a backend.
    urls = {(b["url"], b["api_key"]) for b in backends if b["enabled"] and not b.get("managed")}
    results = dict(zip(urls, await asyncio.gather(*(_probed(url, key) for url, key in urls)), strict=True))
    for backend in backends:
        if backend.get("managed"):
            await _managed(backend)
        else:
            key = (backend["url"], backend.pop("api_key"))
            backend.update(results.get(key) or _unknown("disabled"))
        backend["in_flight"] = routing.in_flight(backend["id"])
    return models
