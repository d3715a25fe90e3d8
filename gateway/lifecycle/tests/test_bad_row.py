"""One bad row never takes the node down: a managed backend whose llama_args cannot be parsed (saved around the
admin's check, or by an older version) is refused with its problem, while the other models serve and the supervisor
keeps its heartbeat, whether the row was bad when it started or turned bad while it ran."""

from __future__ import annotations

import time

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import Backend, Supervisor
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
BAD = '--ctx-size "1024'  # an unbalanced quote


def refused_as_misconfigured(live_gateway: str, api_key: str, model: str) -> None:
    started = time.monotonic()
    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model, **HELLO})
    assert time.monotonic() - started < 5
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_misconfigured" and "llama_args" in error["message"]


def heartbeat_continues(supervisor: RunningSupervisor) -> None:
    row = Supervisor.objects.get(pid=supervisor.process.pid)
    before = row.heartbeat
    deadline = time.monotonic() + 15
    while Supervisor.objects.get(pid=supervisor.process.pid).heartbeat == before:
        assert time.monotonic() < deadline, "the supervisor's heartbeat stopped"
        time.sleep(0.2)
    assert supervisor.process.poll() is None


def test_a_supervisor_started_with_a_bad_row_serves_the_others(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, model_b = two_models
    Backend.objects.filter(model__model_id=model_a).update(llama_args=BAD)  # what the admin now refuses to save

    supervisor: RunningSupervisor = supervisor_factory()  # type: ignore[operator]

    refused_as_misconfigured(live_gateway, api_key, model_a)
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_b, **HELLO}).status_code == 200
    heartbeat_continues(supervisor)


def test_a_row_that_turns_bad_while_it_runs_leaves_the_others_serving(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, model_b = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_b, **HELLO}).status_code == 200

    Backend.objects.filter(model__model_id=model_a).update(llama_args=BAD)
    supervisor.wait_for(model_a, lambda s: "llama_args" in s["last_error"], 15, "misconfigured")

    refused_as_misconfigured(live_gateway, api_key, model_a)
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_b, **HELLO}).status_code == 200
    heartbeat_continues(supervisor)
