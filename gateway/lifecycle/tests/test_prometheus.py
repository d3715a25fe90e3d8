"""GET /metrics carries the managed models' states, memory and requests, and each node's budget; the sampler polls
a running managed model like any backend."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from django.test import Client, override_settings

from gateway.lifecycle.tests.conftest import BUDGET_FOR_ONE_MB, RunningSupervisor
from gateway.models import Backend, Supervisor
from gateway.node import link as client
from monitor.sampler import enabled_backends
from tests.scrape import parse, value

TOKEN = "scrape-token-123"


def recorded(reserved: int) -> bool:
    """Whether the supervisor's once-a-second write of counters and measurements has happened."""
    return Supervisor.objects.filter(used_bytes=reserved).exists()


@override_settings(MONITOR_METRICS_TOKEN=TOKEN)
def test_metrics_show_each_models_state_and_memory_and_the_budget(
    two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    backend = Backend.objects.get(model__model_id="model-a")
    asyncio.run(client.command(supervisor.address, "load", backend.id, wait=True))
    supervisor.wait_for("model-a", lambda s: s["memory"]["measured_bytes"], 5, "measured")
    state = supervisor.state("model-a")
    measured, reserved = state["memory"]["measured_bytes"], state["memory"]["reserved_bytes"]
    assert reserved >= measured  # its measurement, and its peak since (VmHWM)
    deadline = time.monotonic() + 3
    while not recorded(reserved):
        assert time.monotonic() < deadline, "the measurement was not written within a second or two"
        time.sleep(0.1)

    samples = parse(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())

    a, b = {"node": state["node"], "model": "model-a"}, {"node": state["node"], "model": "model-b"}
    assert value(samples, "jetson_model_state", **a, state="ready") == 1
    assert value(samples, "jetson_model_state", **a, state="stopped") == 0
    assert value(samples, "jetson_model_state", **b, state="stopped") == 1
    assert value(samples, "jetson_model_memory_estimated_bytes", **a) == state["memory"]["estimated_bytes"]
    assert value(samples, "jetson_model_memory_measured_bytes", **a) == measured
    assert ("jetson_model_requests_in_flight", frozenset(a.items())) in samples
    assert value(samples, "jetson_model_budget_bytes", node=state["node"]) == BUDGET_FOR_ONE_MB * 1024 * 1024
    assert value(samples, "jetson_model_budget_used_bytes", node=state["node"]) == reserved
    assert value(samples, "jetson_model_supervisor_up", node=state["node"]) == 1
    # The sampler polls the running model's /slots and /metrics like any backend; the stopped one is not polled.
    assert [polled.target.base_url for polled in enabled_backends()] == [f"http://127.0.0.1:{state['port']}"]


@override_settings(MONITOR_METRICS_TOKEN=TOKEN)
def test_a_model_whose_supervisor_is_gone_is_unknown_not_ready(
    two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    backend = Backend.objects.get(model__model_id="model-a")
    asyncio.run(client.command(supervisor.address, "load", backend.id, wait=True))
    node = supervisor.state("model-a")["node"]
    os.kill(supervisor.process.pid, signal.SIGKILL)  # its row still says ready
    supervisor.process.wait(10)
    Supervisor.objects.update(heartbeat="2000-01-01T00:00:00Z")  # as a supervisor gone long ago leaves it

    samples = parse(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())

    a = {"node": node, "model": "model-a"}
    assert value(samples, "jetson_model_state", **a, state="unknown") == 1
    assert value(samples, "jetson_model_state", **a, state="ready") == 0
