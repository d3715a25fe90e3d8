"""The gateway's request metrics for Prometheus: counters and histograms updated as each request's record is submitted,
the energy counter the node's sampler adds to as it measures each request, and the count of requests the limits
admitted without Redis.

prometheus_client's multiprocess mode: every process adds to its own memory-mapped files, and a scrape of any gateway
process sums every file. The gateway processes write into settings.PROMETHEUS_MULTIPROC_DIR, the node's sampler
(`manage.py monitor`, the only process that counts energy) into a directory of its own inside it (`sampler_directory`).
So the figures are the node's, and a scrape costs the same whatever the size of the request log. Each directory is
cleared when its writers start, unless one of them still uses it (`claim_directory`): the gateway's by `manage.py
clearmetrics` before the gateway starts, the sampler's by the sampler itself as it starts. The counters of a process
that exits stay in the sum until then; at a start they restart at zero, which Prometheus reads as a counter reset.
Keeping the two apart is what lets both be cleared: a sampler that runs for weeks would otherwise hold the gateway's
directory, and the files of every gateway process since would pile up.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from gateway.requestlog.rows import Fields

if values.ValueClass is values.MutexValue:
    # Each process would count for itself only, and the scrape (which reads the files) would show nothing.
    raise ImproperlyConfigured(
        "prometheus_client was imported before the settings set PROMETHEUS_MULTIPROC_DIR: import it after django.setup()"
    )

logger = logging.getLogger(__name__)

MODEL_ENDPOINT = ("model", "endpoint")
REQUESTS = Counter(
    "jetson_gateway_requests_total",
    "API requests by model, endpoint and status.",
    (*MODEL_ENDPOINT, "status"),
    registry=None,
)
TOKENS = Counter(
    "jetson_gateway_tokens_total",
    "Tokens by kind (prompt, completion).",
    (*MODEL_ENDPOINT, "kind"),
    registry=None,
)
DURATION = Histogram(
    "jetson_gateway_request_duration_seconds",
    "API request latency, whole request (a stream: until its last chunk).",
    MODEL_ENDPOINT,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
    registry=None,
)
TTFT = Histogram(
    "jetson_gateway_time_to_first_token_seconds",
    "Time to the first token of generation requests.",
    MODEL_ENDPOINT,
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=None,
)
TOKENS_PER_SECOND = Histogram(
    "jetson_gateway_tokens_per_second",
    "Generation speed of completions, as llama-server measured it.",
    MODEL_ENDPOINT,
    # From a 70B model on an Orin Nano to a 270M one on an AGX Orin.
    buckets=(1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500),
    registry=None,
)
PROMPT_CACHE = Counter(
    "jetson_gateway_prompt_cache_requests_total",
    "Requests by where their prompt's start was read from: a cache restored from disk, the model's memory, or none.",
    ("model", "source"),
    registry=None,
)
CACHED_TOKENS = Counter(
    "jetson_gateway_cached_prompt_tokens_total",
    "Prompt tokens served from a cache instead of being read.",
    ("model",),
    registry=None,
)
# With these two, the prefill time the cached tokens saved: cached tokens times the seconds per prompt token read.
PROMPT_READ_SECONDS = Counter(
    "jetson_gateway_prompt_read_seconds_total",
    "Time spent reading the uncached part of prompts, of the requests whose backend said it.",
    ("model",),
    registry=None,
)
PROMPT_READ_TOKENS = Counter(
    "jetson_gateway_prompt_read_tokens_total",
    "Prompt tokens read (not cached) by those requests.",
    ("model",),
    registry=None,
)
ENERGY = Counter(
    "jetson_gateway_energy_joules_total",
    "Energy of generation requests, the node's board power shared among the requests in flight (gross).",
    ("model",),
    registry=None,
)
# Not *.db: the collector reads only those. The same name in both directories (a gateway of the previous version,
# still running through an upgrade, holds it in the gateway's).
_LOCK_FILE = "gateway.lock"
_claims: dict[Path, IO[bytes]] = {}


def endpoint_label(path: str) -> str:
    # One series for every model's detail page: the path is the client's to choose.
    return "/v1/models/{model}" if path.startswith("/v1/models/") else path


@functools.cache
def _series(metric: MetricWrapperBase, *labels: object) -> Any:
    # labels() validates and converts on every call: 1.5 µs, as much as the increment itself. The label space is
    # bounded (registry models, routes, statuses), and so is this cache.
    return metric.labels(*labels)


def observe(record: Fields) -> None:
    """Count one finished request; called once per record, as it is submitted."""
    # The model the request was routed to, never the name the client sent: labels come from the registry, so a
    # client cannot make series at will.
    model, endpoint = record.model_used, endpoint_label(record.endpoint)
    try:
        _series(REQUESTS, model, endpoint, record.status).inc()
        if record.latency_ms is not None:
            _series(DURATION, model, endpoint).observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            _series(TTFT, model, endpoint).observe(record.ttft_ms / 1000)
        if record.tokens_per_second:
            _series(TOKENS_PER_SECOND, model, endpoint).observe(record.tokens_per_second)
        if record.prompt_tokens:
            _series(TOKENS, model, endpoint, "prompt").inc(record.prompt_tokens)
        if record.completion_tokens:
            _series(TOKENS, model, endpoint, "completion").inc(record.completion_tokens)
        if record.prompt_cache:  # blank: the backend did not say
            _series(PROMPT_CACHE, model, record.prompt_cache).inc()
        if record.cached_tokens:
            _series(CACHED_TOKENS, model).inc(record.cached_tokens)
        read = (record.prompt_tokens or 0) - (record.cached_tokens or 0)
        if record.prompt_ms is not None and record.cached_tokens is not None and read > 0:
            # The rows /api/usage prices a token read with (gateway.requestlog.usage.cache_aggregates).
            _series(PROMPT_READ_SECONDS, model).inc(record.prompt_ms / 1000)
            _series(PROMPT_READ_TOKENS, model).inc(read)
    except Exception:
        # A request never fails because of its metrics (a full disk under the directory, say).
        logger.exception("Could not update the request metrics")


def count_energy(model: str, joules: float | None) -> None:
    """Add a request's energy to its model's counter; called by the node's sampler (monitor.energy) as it writes the
    request's energy fact.

    The sampler counts in its own directory: `manage.py monitor` moves there as it starts (`use_sampler_directory`),
    and so does the first call here, so that no caller can forget it and a gateway start never clears files the
    sampler still writes. Nothing (None, a negative or not-a-number figure) counts nothing: a counter only rises.
    """
    if joules is None or not math.isfinite(joules) or joules <= 0:
        return
    try:
        use_sampler_directory()
        _series(ENERGY, model).inc(joules)
    except Exception:
        logger.exception("Could not count the energy of a request")


def sampler_directory() -> Path:
    """Where the node's sampler keeps its counters: a directory of its own, inside the gateway processes' one."""
    return Path(settings.PROMETHEUS_MULTIPROC_DIR) / "sampler"


def use_sampler_directory() -> None:
    """Have this process (the node's sampler) count in the sampler's directory, cleared first unless another sampler
    still uses it, and claimed until this process exits; once per process, before it creates its first series.

    prometheus_client opens a process's file of each metric type in the PROMETHEUS_MULTIPROC_DIR of the environment
    at the moment that type's first series is created (prometheus_client.values.MultiProcessValue).
    """
    directory = sampler_directory()
    if directory in _claims:
        return
    clear_directory(directory)
    claim_directory(directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


class _NodeFiles:
    """A collector of the sum over every process's files: the gateway processes' and the sampler's."""

    def __init__(self, *directories: Path) -> None:
        self.directories = directories

    def collect(self) -> Iterable[Metric]:
        try:
            return MultiProcessCollector.merge(self._files(), accumulate=True)
        except FileNotFoundError:
            # A file cleared by a sampler starting between the listing and the reading: list again.
            return MultiProcessCollector.merge(self._files(), accumulate=True)

    def _files(self) -> list[str]:
        return [str(path) for directory in self.directories for path in directory.glob("*.db")]


@functools.cache
def _limits_fallback() -> Counter:
    # Made at its first use, not at import: a counter without labels opens its file as it is made, and every process
    # that imports this module (the sampler too, whose counters live elsewhere) would leave one in the gateway's.
    return Counter(
        "jetson_gateway_limits_fallback_total",
        "Requests admitted by a gateway process's own limit counters while Redis was unreachable (gateway.limits).",
        registry=None,
    )


def count_limits_fallback() -> None:
    """Count one request admitted by this process's own limit counters, Redis being unreachable."""
    try:
        _limits_fallback().inc()
    except Exception:
        logger.exception("Could not count a request admitted without Redis")


def add_to(registry: CollectorRegistry) -> None:
    """Have `registry` expose the node's request metrics: the sum over every process's files."""
    registry.register(_NodeFiles(Path(settings.PROMETHEUS_MULTIPROC_DIR), sampler_directory()))


def claim_directory(directory: Path | None = None) -> None:
    """Mark this process as a user of a metrics directory (default: the gateway processes') until it exits, so that
    no start clears it meanwhile."""
    directory = Path(directory or settings.PROMETHEUS_MULTIPROC_DIR)
    if directory not in _claims:
        claim = open(directory / _LOCK_FILE, "ab")  # noqa: SIM115 (held until exit)
        fcntl.flock(claim, fcntl.LOCK_SH)  # waits while a clear_directory runs
        _claims[directory] = claim


def clear_directory(directory: Path | None = None) -> int | None:
    """Delete the files of processes that ran before this start from a metrics directory (default: the gateway
    processes'), as prometheus_client advises.

    Returns how many files went, or None when a process still uses the directory (it holds the lock of
    `claim_directory`): its counters, and those of exited processes, must stay while it runs.
    """
    directory = Path(directory or settings.PROMETHEUS_MULTIPROC_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / _LOCK_FILE, "ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        files = list(directory.glob("*.db"))
        for file in files:
            file.unlink(missing_ok=True)
        return len(files)
