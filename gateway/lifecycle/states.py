"""The managed models' states as their supervisors wrote them to the database: what the API, /health, Prometheus,
the admin and the dashboard show, on any node, without a connection to a supervisor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from gateway.models import Backend, ManagedRuntime, ModelState, Supervisor

ALIVE_WITHIN = timedelta(seconds=20)  # a supervisor writes a heartbeat every 5 s


def _iso(moment: Any) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def model_entry(backend: Backend, runtime: ManagedRuntime | None) -> dict[str, Any]:
    """A model's state in the shape the supervisor pushes (its Model.snapshot), plus its kind and whether it is on."""
    state = runtime or ManagedRuntime(backend=backend)  # never seen by a supervisor: stopped
    return {
        "id": backend.model.model_id,
        "backend": backend.id,
        "node": backend.node,
        "kind": backend.model.kind,
        "enabled": backend.enabled and backend.model.enabled,
        "state": str(state.state),
        "since": _iso(state.since) if runtime else None,
        "pid": state.pid,
        "port": state.port,
        "memory": {
            "estimated_bytes": state.estimated_bytes,
            "estimate": state.estimate_detail or None,
            "measured_bytes": state.measured_bytes,
        },
        "in_flight": state.in_flight,
        "waiting": state.waiting,
        "last_used": _iso(state.last_used),
        "unload_at": _iso(state.unload_at),
        "idle_ttl": float(settings.MODEL_IDLE_TTL if backend.idle_ttl is None else backend.idle_ttl),
        "pinned": backend.pinned,
        "load_seconds": state.load_seconds,
        "last_error": state.last_error,
        "exit_code": state.exit_code,
    }


def node_entry(supervisor: Supervisor) -> dict[str, Any]:
    total = supervisor.budget_bytes
    return {
        "node": supervisor.node,
        "supervisor": {
            "address": f"{supervisor.host}:{supervisor.port}",
            "pid": supervisor.pid,
            "started": _iso(supervisor.started),
            "heartbeat": _iso(supervisor.heartbeat),
            "alive": is_alive(supervisor),
        },
        "budget": {
            "total_bytes": total,
            "used_bytes": supervisor.used_bytes,
            "free_bytes": total - supervisor.used_bytes if total is not None else None,
            "source": supervisor.budget_source,
        },
    }


def is_alive(supervisor: Supervisor) -> bool:
    return timezone.now() - supervisor.heartbeat <= ALIVE_WITHIN


def snapshot() -> dict[str, Any]:
    """Every managed model (enabled or not) with its state and figures, and every node's supervisor and budget."""
    backends = (
        Backend.objects.filter(managed=True).select_related("model", "runtime").order_by("model__model_id", "node")
    )
    models = [model_entry(b, getattr(b, "runtime", None)) for b in backends]
    nodes = [node_entry(s) for s in Supervisor.objects.order_by("node")]
    return {"object": "list", "data": models, "nodes": nodes}


def is_loadable(state: str, supervisor_alive: bool) -> bool:
    """A managed model serves requests when its supervisor runs and it is not failed: it loads on demand."""
    return supervisor_alive and state != ModelState.FAILED
