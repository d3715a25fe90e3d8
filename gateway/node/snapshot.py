"""A managed model's state, typed, in one shape: what its supervisor pushes, writes into its row, and what
/api/models/running, /health, the dashboard and Prometheus show."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

# The states a supervisor records, and what a reader shows when the model's supervisor is gone (its row may say
# "ready" for a process that died with it).
STOPPED, STARTING, READY, STOPPING, FAILED = "stopped", "starting", "ready", "stopping", "failed"
UNKNOWN = "unknown"
STATES = (STOPPED, STARTING, READY, STOPPING, FAILED)
SHOWN_STATES = (*STATES, UNKNOWN)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class Memory:
    """A model's memory in bytes: the GGUF estimate (with its parts), what the process was measured holding once
    loaded, its peak (VmHWM plus device buffers), and what the budget reserves for it now."""

    estimated_bytes: int | None = None
    estimate: dict[str, int] | None = None
    measured_bytes: int | None = None
    peak_bytes: int | None = None
    reserved_bytes: int = 0


@dataclass(frozen=True)
class ModelSnapshot:
    id: str
    backend: int
    node: str
    kind: str = "chat"
    enabled: bool = True
    state: str = STOPPED
    since: datetime | None = None
    pid: int | None = None
    port: int | None = None
    memory: Memory = field(default_factory=Memory)
    in_flight: int = 0
    waiting: int = 0
    last_used: datetime | None = None
    unload_at: datetime | None = None
    idle_ttl: float = 0.0
    pinned: bool = False
    load_seconds: float | None = None
    last_error: str = ""
    exit_code: int | None = None
    oom_kills: int = 0
    saved_caches: int = 0  # prompt caches saved on disk for its conversations (gateway.lifecycle.kvcache)
    saved_cache_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("since", "last_used", "unload_at"):
            data[name] = iso(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSnapshot:
        values = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        values["memory"] = Memory(**(data.get("memory") or {}))
        for name in ("since", "last_used", "unload_at"):
            values[name] = _parse(values.get(name))
        return cls(**values)

    def gone(self) -> ModelSnapshot:
        """As a reader shows it when its supervisor is not alive: nothing it recorded can be vouched for."""
        return replace(self, state=UNKNOWN, in_flight=0, waiting=0, pid=None, port=None, unload_at=None)


@dataclass(frozen=True)
class Budget:
    """A node's memory for models: `total_bytes` is what the last decision could fill (the configured budget,
    capped by the memory available then), `used_bytes` what its models reserve."""

    node: str
    total_bytes: int | None
    used_bytes: int
    source: str

    @property
    def free_bytes(self) -> int | None:
        return None if self.total_bytes is None else self.total_bytes - self.used_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "total_bytes": self.total_bytes, "used_bytes": self.used_bytes,
                "free_bytes": self.free_bytes, "source": self.source}  # fmt: skip
