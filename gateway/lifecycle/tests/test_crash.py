"""A llama-server that dies is noticed: its model returns to "stopped" and the next request starts it again."""

from __future__ import annotations

import os
import signal

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}


def test_a_llama_server_killed_with_sigkill_is_noticed_and_restarted_by_the_next_request(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    first_pid = supervisor.state(model_a)["pid"]

    os.kill(first_pid, signal.SIGKILL)
    noticed_after = supervisor.wait_for(model_a, lambda s: s["state"] == "stopped", 1.0, "stopped")
    print(f"noticed {noticed_after * 1000:.0f} ms after the kill")
    state = supervisor.state(model_a)
    assert state["exit_code"] == -signal.SIGKILL
    assert "exited unexpectedly" in state["last_error"]

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

    assert response.status_code == 200, response.text
    state = supervisor.state(model_a)
    assert state["state"] == "ready" and state["pid"] != first_pid
    assert supervisor.starts(model_a) == 2
