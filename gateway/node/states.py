"""The managed models' states as their supervisors wrote them to the database: what the API, /health, Prometheus,
the admin and the dashboard show, on any node, without a connection to a supervisor. A model whose supervisor is
not alive is shown `unknown`: its row may say `ready` for a process that died with it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from gateway.models import Backend, ManagedRuntime, Supervisor
from gateway.node import link
from gateway.node.snapshot import STOPPED, Budget, Memory, ModelSnapshot, iso

ALIVE_WITHIN = timedelta(seconds=20)  # a supervisor writes a heartbeat every 5 s


def model_snapshot(backend: Backend, runtime: ManagedRuntime | None, supervisor_alive: bool) -> ModelSnapshot:
    """A model's row as the typed snapshot its supervisor pushes, with its kind and whether it is on."""
    enabled = backend.enabled and backend.model.enabled
    ttl = float(settings.MODEL_IDLE_TTL if backend.idle_ttl is None else backend.idle_ttl)
    common = {"id": backend.model.model_id, "backend": backend.id, "node": backend.node, "kind": backend.model.kind,
              "enabled": enabled, "idle_ttl": ttl, "pinned": backend.pinned}  # fmt: skip
    if runtime is None:  # never seen by a supervisor: stopped
        snapshot = ModelSnapshot(**common, state=STOPPED)
    else:
        memory = Memory(
            estimated_bytes=runtime.estimated_bytes, estimate=runtime.estimate_detail or None,
            measured_bytes=runtime.measured_bytes, peak_bytes=runtime.peak_bytes,
            reserved_bytes=runtime.reserved_bytes or 0,
        )  # fmt: skip
        snapshot = ModelSnapshot(
            **common, state=str(runtime.state), since=runtime.since, pid=runtime.pid, port=runtime.port, memory=memory,
            in_flight=runtime.in_flight, waiting=runtime.waiting, last_used=runtime.last_used,
            unload_at=runtime.unload_at, load_seconds=runtime.load_seconds, last_error=runtime.last_error,
            exit_code=runtime.exit_code, oom_kills=runtime.oom_kills, saved_caches=runtime.saved_caches,
            saved_cache_bytes=runtime.saved_cache_bytes,
        )  # fmt: skip
    return snapshot if supervisor_alive else snapshot.gone()


def node_entry(supervisor: Supervisor) -> dict[str, Any]:
    budget = Budget(supervisor.node, supervisor.budget_bytes, supervisor.used_bytes, supervisor.budget_source)
    return {
        "node": supervisor.node,
        "supervisor": {
            "address": link.tcp_address(supervisor.host, supervisor.port),
            "socket": supervisor.socket or None,
            "pid": supervisor.pid,
            "started": iso(supervisor.started),
            "heartbeat": iso(supervisor.heartbeat),
            "alive": is_alive(supervisor),
        },
        "budget": budget.to_dict(),
    }


def connect_to(node: dict[str, Any]) -> str:
    """The address to reach a node's supervisor at, from its entry above."""
    return link.address(node["node"], node["supervisor"]["address"], node["supervisor"]["socket"])


def is_alive(supervisor: Supervisor) -> bool:
    return timezone.now() - supervisor.heartbeat <= ALIVE_WITHIN


def snapshot() -> dict[str, Any]:
    """Every managed model (enabled or not) with its state and figures, and every node's supervisor and budget."""
    supervisors = list(Supervisor.objects.order_by("node"))
    alive = {s.node for s in supervisors if is_alive(s)}
    backends = (
        Backend.objects.filter(managed=True).select_related("model", "runtime").order_by("model__model_id", "node")
    )
    models = [model_snapshot(b, getattr(b, "runtime", None), b.node in alive).to_dict() for b in backends]
    return {"object": "list", "data": models, "nodes": [node_entry(s) for s in supervisors]}
