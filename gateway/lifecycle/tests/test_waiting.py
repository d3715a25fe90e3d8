"""Requests waiting for a model are bounded: a queue length (429), a load timeout (503), both with Retry-After;
a client that leaves while waiting leaves the queue."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gateway.lifecycle.tests.conftest import RunningSupervisor, streaming
from gateway.llama import server_binary
from gateway.tests.conftest import post
from tests.live import send_chat_request

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}
LOAD_TIMEOUT = 0.5
LOAD_DELAY = 3.0  # seconds the slow llama-server sleeps before it loads: far beyond LOAD_TIMEOUT
LEFT_WITHIN = 1.0  # seconds from a waiting client closing its connection to its place in the queue being gone


def test_a_client_that_disconnects_while_waiting_leaves_the_queue(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, model_b = two_models
    with streaming(live_gateway, api_key, model_b, supervisor):
        waiting = send_chat_request(live_gateway, api_key, {"model": model_a, **HELLO})
        supervisor.wait_for(model_a, lambda s: s["waiting"] == 1, 10, "waited for")

        waiting.close()
        left_after = supervisor.wait_for(model_a, lambda s: s["waiting"] == 0, LEFT_WITHIN, "left")
        print(f"left the queue {left_after * 1000:.0f} ms after the client closed")

    # Nobody waits for A any more: B's stream ended, and A is still not loaded.
    supervisor.wait_for(model_b, lambda s: s["in_flight"] == 0, 30, "idle")
    assert supervisor.starts(model_a) == 0
    assert supervisor.state(model_b)["state"] == "ready"


def test_beyond_the_queue_length_a_request_gets_429_with_retry_after(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, model_b = two_models
    supervisor: RunningSupervisor = supervisor_factory(MODEL_QUEUE_LENGTH=1)  # type: ignore[operator]
    with streaming(live_gateway, api_key, model_b, supervisor):
        first = send_chat_request(live_gateway, api_key, {"model": model_a, **HELLO})
        supervisor.wait_for(model_a, lambda s: s["waiting"] == 1, 10, "waited for")

        second = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

        first.close()
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    error = second.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "model_queue_full")


@pytest.fixture
def slow_llama_server(tmp_path: Path) -> str:
    """The real llama-server, started LOAD_DELAY seconds late: a load certain to outlast LOAD_TIMEOUT (the small
    model alone loads in about half a second on a quiet machine, so it could win the race). Like a big model
    mid-load, it leaves on SIGTERM only once the step it is in is done."""
    script = tmp_path / "slow-llama-server"
    real = shlex.quote(str(server_binary()))
    script.write_text(
        f'#!/bin/sh\n[ "$1" = --help ] || {{ trap "exit 143" TERM; sleep {LOAD_DELAY:g}; }}\nexec {real} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def test_a_request_waits_at_most_the_load_timeout_then_gets_503_with_retry_after(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object, slow_llama_server: str
) -> None:
    model_a, _ = two_models
    supervisor: RunningSupervisor = supervisor_factory(  # type: ignore[operator]
        MODEL_LOAD_TIMEOUT=LOAD_TIMEOUT, LLAMA_SERVER_BIN=slow_llama_server
    )

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("unavailable_error", "model_load_timeout")
    assert f"MODEL_LOAD_TIMEOUT ({LOAD_TIMEOUT:g} s)" in error["message"]
    # The load itself may not take longer either: it is stopped, then marked failed (a failed model has no process).
    supervisor.wait_for(model_a, lambda s: s["state"] == "failed", 10, "failed")
    assert f"not ready within {LOAD_TIMEOUT:g} s" in supervisor.state(model_a)["last_error"]
    assert supervisor.llama_servers() == []
