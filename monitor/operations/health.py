"""GET /health's report: every enabled backend probed at once (a managed one as its supervisor recorded it, probed
once it runs), each node's model budget and admission state, this process's request log and limits."""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings

from gateway import limits, requestlog, routing, upstream
from gateway.dbsync import db_sync
from gateway.node import link, states
from gateway.node.models import NodeAdmission
from monitor.operations.probe import Probe, probe


async def _probe(backend: routing.BackendInfo, managed: dict[int, dict]) -> dict:
    if backend.managed:
        return await _managed_report(backend, managed.get(backend.id))
    probed = await probe(backend.target, settings.HEALTH_TIMEOUT)
    report: dict[str, Any] = {"url": backend.target.base_url, "in_flight": routing.in_flight(backend.id)}
    report["status"] = probed.status
    if probed.error:
        report["error"] = probed.error
    if probed.latency_ms is not None:
        report["latency_ms"] = probed.latency_ms
    report.update(_slots(probed))
    report["cooling_off"] = routing.is_down(backend.id)
    return report


def _slots(probed: Probe) -> dict[str, Any]:
    return {"slots": {"busy": probed.slots[0], "idle": probed.slots[1]}} if probed.slots is not None else {}


async def _managed_report(backend: routing.BackendInfo, state: dict | None) -> dict:
    """A managed backend as its supervisor last recorded it; probed like any other once it runs. Stopped is
    "standby": it loads on the next request, as long as its node's supervisor runs."""
    state = state or {"state": "stopped", "supervisor_alive": False}
    report: dict[str, Any] = {"managed": True, "node": backend.node, "state": state["state"],
                              "in_flight": routing.in_flight(backend.id)}  # fmt: skip
    for name in ("memory", "last_used", "unload_at", "last_error"):
        if state.get(name):
            report[name] = state[name]
    if not state.get("supervisor_alive"):
        report["status"], report["error"] = "down", f"no supervisor answers for node {backend.node}"
    elif state["state"] == "ready" and state.get("port"):
        target = upstream.Target(link.model_url(backend.supervisor, state["port"]), link.known_key(backend.id))
        probed = await probe(target, settings.HEALTH_TIMEOUT)
        report.update(url=target.base_url, status=probed.status, latency_ms=probed.latency_ms, **_slots(probed))
    else:
        report["status"] = {"failed": "down", "starting": "loading"}.get(state["state"], "standby")
    return report


def _managed_states() -> tuple[dict[int, dict], list[dict]]:
    snapshot = states.snapshot()
    alive = {node["node"]: node["supervisor"]["alive"] for node in snapshot["nodes"]}
    managed = {m["backend"]: {**m, "supervisor_alive": alive.get(m["node"], False)} for m in snapshot["data"]}
    return managed, snapshot["nodes"]


def _admission() -> list[dict[str, Any]]:
    """Each sampled node's admission state as its sampler decided it (stale once the sampler is silent), and its
    latest sample (`last_seen`)."""
    return [
        {"node": row.node, **row.to_dict(), "last_seen": row.last_seen and row.last_seen.isoformat()}
        for row in NodeAdmission.objects.all()
    ]


def _any_managed(infos: list[routing.ModelInfo]) -> bool:
    return any(backend.managed for info in infos for backend in info.backends)


async def report() -> dict[str, Any]:
    """The body of GET /health."""
    registry = await routing.registry()
    infos = list({info.model_id: info for info in registry.values()}.values())
    managed, nodes = await db_sync(_managed_states)() if _any_managed(infos) else ({}, [])
    probes, admission = await asyncio.gather(
        asyncio.gather(*(asyncio.gather(*(_probe(b, managed) for b in info.backends)) for info in infos)),
        db_sync(_admission)(),
    )
    models_report = [
        {
            "id": info.model_id,
            "kind": info.kind,
            # A managed backend on standby serves: it loads on demand.
            "status": "ok" if any(p["status"] in ("ok", "standby", "loading") for p in backends) else "down",
            "backends": backends,
        }
        for info, backends in zip(infos, probes, strict=True)
    ]
    ok = all(m["status"] == "ok" for m in models_report)
    return {
        "status": "ok" if ok else "degraded",
        "models": models_report,
        "nodes": [
            {"node": n["node"], "supervisor_alive": n["supervisor"]["alive"], "budget": n["budget"]} for n in nodes
        ],
        "admission": admission,
        "request_log": {
            "pending": requestlog.pending_count(),
            "dropped": requestlog.dropped_count(),
            "in_progress": requestlog.in_progress_count(),
        },
        "limits": limits.status(),
    }
