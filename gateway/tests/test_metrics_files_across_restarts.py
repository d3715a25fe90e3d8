"""On a node run as the systemd units run it (the sampler for good, the gateway restarted with `clearmetrics` before
each start), the metrics directory holds as many files after any number of gateway restarts as after the first start,
and /metrics still shows the sampler's energy counter and the gateway's request counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.test import override_settings

from gateway.lifecycle.tests.conftest import (  # noqa: F401 (fixtures)
    RunningSampler,
    RunningSupervisor,
    register_managed,
    sampler_factory,
    small_gguf,
    supervisor,
    supervisor_factory,
)
from gateway.tests.conftest import post
from tests.live import METRICS_TOKEN, database_url, start_daphne, stop_process
from tests.scrape import Samples, scrape, value

MODEL = "restarts-model"
STARTS = 3
CHAT_OK = {"model": MODEL, "endpoint": "/v1/chat/completions", "status": "200"}
ENERGY = "jetson_gateway_energy_joules_total"


def energy_after(url: str, before: float) -> Samples:
    """A scrape once the sampler has counted the energy of a request that ended (within seconds of its end)."""
    deadline = time.monotonic() + 30
    while value(samples := scrape(url), ENERGY, model=MODEL) <= before:
        assert time.monotonic() < deadline, f"the energy counter did not rise above {before} J within 30 s"
        time.sleep(0.2)
    return samples


def test_the_files_stay_bounded_across_gateway_restarts_with_a_sampler_running(
    tmp_path: Path,
    supervisor: RunningSupervisor,  # noqa: F811
    sampler_factory: Callable[..., RunningSampler],  # noqa: F811
    small_gguf: str,  # noqa: F811
    api_key: str,
) -> None:
    directory = tmp_path / "metrics"
    env = {"DATABASE_URL": database_url(), "MONITOR_METRICS_TOKEN": METRICS_TOKEN, "LOG_FLUSH_INTERVAL": "0.1",
           "PROMETHEUS_MULTIPROC_DIR": str(directory)}  # fmt: skip
    register_managed(MODEL, small_gguf)
    node = sampler_factory(PROMETHEUS_MULTIPROC_DIR=directory)
    node.set_power(10)
    files, cleared, energy = [], [], 0.0
    for _ in range(STARTS):
        out = StringIO()
        with override_settings(PROMETHEUS_MULTIPROC_DIR=directory):
            call_command("clearmetrics", stdout=out)  # the unit's ExecStartPre
        cleared.append(out.getvalue().strip())
        gateway, url = start_daphne(env)
        try:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
            assert post(url, api_key, "/v1/chat/completions", body).status_code == 200
            samples = energy_after(url, energy)
            # This start's requests only: counters restart at zero with each start of the gateway ...
            assert value(samples, "jetson_gateway_requests_total", **CHAT_OK) == 1
            # ... and the sampler's energy, counted since it started, never falls.
            energy = value(samples, ENERGY, model=MODEL)
        finally:
            stop_process(gateway)
        files.append(sorted(path.name for path in directory.rglob("*.db")))
    print(f"files after each start: {files}")
    assert all(len(names) == len(files[0]) for names in files), (files, cleared)
