"""No request waits without end for its supervisor: one that is stopped (SIGSTOP: a hung disk write, a frozen
process) answers 503 within seconds through the link's liveness, one that is killed at once; a killed supervisor
leaves no llama-server behind, and a new one serves again after one cold load."""

from __future__ import annotations

import os
import signal
import time

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
STOPPED_ANSWER_WITHIN = 15.0
KILLED_ANSWER_WITHIN = 3.0


def timed(live_gateway: str, api_key: str, model: str) -> tuple[float, int, dict]:
    started = time.monotonic()
    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model, **HELLO})
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    return time.monotonic() - started, response.status_code, body


def test_a_stopped_supervisor_gives_an_answer_within_seconds(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200

    os.kill(supervisor.process.pid, signal.SIGSTOP)
    try:
        seconds, status, body = timed(live_gateway, api_key, model_a)
    finally:
        os.kill(supervisor.process.pid, signal.SIGCONT)

    print(f"answered {seconds:.1f} s after the request")
    assert seconds < STOPPED_ANSWER_WITHIN
    assert status == 503 and body["error"]["code"] == "supervisor_unavailable"
    # Once it runs again, so does the model.
    supervisor.wait_for(model_a, lambda s: s["state"] == "ready", 30, "ready")
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200


def test_a_killed_supervisor_gives_503_at_once_leaves_no_model_and_a_new_one_serves(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, _ = two_models
    first: RunningSupervisor = supervisor_factory()  # type: ignore[operator]
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    children = first.llama_servers()

    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    seconds, status, body = timed(live_gateway, api_key, model_a)

    print(f"answered {seconds * 1000:.0f} ms after the request")
    assert seconds < KILLED_ANSWER_WITHIN
    assert status == 503 and body["error"]["code"] == "supervisor_unavailable"
    for child in children:
        child.wait(5)  # it died with its supervisor
    second: RunningSupervisor = supervisor_factory()  # type: ignore[operator]
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    assert second.state(model_a)["state"] == "ready"
