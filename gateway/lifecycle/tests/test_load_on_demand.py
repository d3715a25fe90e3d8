"""A managed model that is not running starts on its first request, and the request is served by it."""

from __future__ import annotations

import time

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import ManagedRuntime, RequestLog
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}


def logged_row(request_id: str) -> RequestLog:
    deadline = time.monotonic() + 10
    while (row := RequestLog.objects.filter(request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, "the request was not logged"
        time.sleep(0.1)
    return row


def test_it_loads_the_model_on_its_first_request(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, model_b = two_models
    assert supervisor.state(model_a)["state"] == "stopped"

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] > 0
    state = supervisor.state(model_a)
    assert state["state"] == "ready"
    assert [p.pid for p in supervisor.llama_servers()] == [state["pid"]]
    assert supervisor.state(model_b)["state"] == "stopped"  # nothing else was loaded
    row = logged_row(response.headers["X-Request-Id"])
    assert row.backend == f"http://127.0.0.1:{state['port']}"
    assert row.cold_start_ms is not None and row.cold_start_ms > 0
    print(f"cold start {row.cold_start_ms:.0f} ms, load {state['load_seconds']} s")


def test_a_request_for_a_ready_model_has_no_cold_start(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200

    warm = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

    assert warm.status_code == 200
    assert logged_row(warm.headers["X-Request-Id"]).cold_start_ms is None
    assert supervisor.starts(model_a) == 1


def test_the_database_shows_the_state_to_readers_without_a_connection(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    pid = supervisor.state(model_a)["pid"]

    # States are written as they change, counters and measurements at most a second later.
    deadline = time.monotonic() + 3
    while not (runtime := ManagedRuntime.objects.get(backend__model__model_id=model_a)).measured_bytes:
        assert time.monotonic() < deadline, "the measured memory was not recorded"
        time.sleep(0.1)

    assert (runtime.state, runtime.pid) == ("ready", pid)
    assert runtime.estimated_bytes
    assert set(runtime.estimate_detail) == {"weights", "kv", "compute", "prompt_cache", "total"}
