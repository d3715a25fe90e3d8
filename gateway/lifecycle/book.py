"""The supervisor's books: each managed model's state, the leases it has in flight, the requests queued for it, and
what each connected holder (a gateway process, an operator's command, the sampler) holds or waits for.

Plain data: the machine (gateway.lifecycle.machine) changes it, one event at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from gateway.lifecycle.config import Setup
from gateway.node.snapshot import FAILED, READY, STARTING, STOPPED, STOPPING

ACTIVE = (STARTING, READY, STOPPING)  # states whose process holds (or may hold) memory
OOM_MARGIN = 1.25  # after an OOM kill a model is budgeted this much above the figure it reached


@dataclass
class Waiter:
    """A request queued for a model: answered with a grant, a refusal, or a timeout at `deadline`."""

    holder: int
    message_id: Any
    since: float
    deadline: float
    ready_on_arrival: bool  # it waited for its turn under a soft admission limit, not for a load


@dataclass
class Lease:
    holder: int
    started: float


@dataclass
class Watcher:
    """An operator's load or unload that waits until the model is `until` (READY or STOPPED)."""

    holder: int
    message_id: Any
    until: str
    deadline: float


@dataclass
class Pending:
    """An acquire for a backend the supervisor has not read yet: held until its registry is read again."""

    holder: int
    message_id: Any
    backend: int
    lease: str
    deadline: float


@dataclass
class Holder:
    # lease → the backend it is for, or the model for a visitor's lease (below)
    leases: dict[str, int | str] = field(default_factory=dict)
    waiting: dict[str, int | str] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)


@dataclass
class Visitor:
    """A model served on this node by a llama-server the supervisor does not run (an external backend). Its
    requests take leases too, so that the node's admission applies to them and the sampler shares the board's energy
    with them; there is no process to load, stop or count in the budget."""

    generation: bool  # embeddings are never shed and take no share of the energy
    leases: dict[str, Lease] = field(default_factory=dict)
    waiters: OrderedDict[str, Waiter] = field(default_factory=OrderedDict)


@dataclass
class Entry:
    """One managed model on the books."""

    setup: Setup
    state: str = STOPPED
    since: float = 0.0  # monotonic
    generation: int = 0  # the number of the process the other fields are about
    alive: bool = False  # a process of this generation runs (or is being started): at most one per model
    started_at: float = 0.0
    pid: int | None = None
    port: int | None = None
    key: str = ""  # the process's own API key; never written to the database
    leases: dict[str, Lease] = field(default_factory=dict)
    waiters: OrderedDict[str, Waiter] = field(default_factory=OrderedDict)
    watchers: list[Watcher] = field(default_factory=list)
    wanted: float | None = None  # an operator (or pinning) asked for it to be loaded, at this time
    last_used: float | None = None
    idle_since: float | None = None
    failed_until: float = 0.0
    failure_code: str = "model_load_failed"
    last_error: str = ""
    exit_code: int | None = None
    load_seconds: float | None = None
    measured: int | None = None  # what the process held once loaded (VmHWM + device buffers), without its cache
    measured_for: str = ""
    peak: int | None = None  # the most it was seen holding
    oom_kills: int = 0
    oom_floor: int = 0  # after an OOM kill: never budgeted below this
    removed: bool = False  # no longer a managed model of this node: leaves the books once its process has exited
    pending_failure: str = ""  # why it is being stopped, when the stop ends in `failed` (a load that timed out)
    saved_caches: int = 0  # its prompt caches saved on disk (gateway.lifecycle.promptcache), and their bytes
    saved_cache_bytes: int = 0

    @property
    def backend_id(self) -> int:
        return self.setup.backend_id

    @property
    def model_id(self) -> str:
        return self.setup.model_id

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def ttl(self) -> float:
        config = self.setup.config
        return 0.0 if config is None or config.pinned else config.idle_ttl

    @property
    def pinned(self) -> bool:
        return bool(self.setup.config and self.setup.config.pinned)

    @property
    def embeddings(self) -> bool:
        return bool(self.setup.config and self.setup.config.embeddings)

    def measured_valid(self) -> bool:
        config = self.setup.config
        return config is not None and self.measured is not None and self.measured_for == config.signature

    @property
    def need(self) -> int:
        """Bytes the budget reserves for it: what it was measured holding once loaded (plus its prompt cache's
        limit), else the estimate; never less than its peak, nor than the floor an OOM kill set."""
        config = self.setup.config
        if config is None:
            return 0
        if self.measured_valid():
            need = self.measured + config.cache_ram_mb * 1024 * 1024  # type: ignore[operator]
            need = max(need, self.peak or 0)
        else:
            need = self.setup.need
        return max(need, self.oom_floor)

    @property
    def unload_at(self) -> float | None:
        if self.state != READY or self.leases or self.waiters or self.idle_since is None or self.ttl <= 0:
            return None
        return self.idle_since + self.ttl

    def first_wait(self) -> float:
        times = [w.since for w in self.waiters.values()]
        if self.wanted is not None:
            times.append(self.wanted)
        return min(times, default=float("inf"))

    def loadable(self, now: float) -> bool:
        """Whether the scheduler may start it now, if it is wanted and fits."""
        if self.alive or self.removed or self.setup.problem or self.setup.config is None:
            return False
        return self.state == STOPPED or (self.state == FAILED and now >= self.failed_until)

    def wanted_now(self) -> bool:
        return bool(self.waiters) or self.wanted is not None

    @property
    def stopping(self) -> bool:
        return self.state == STOPPING
