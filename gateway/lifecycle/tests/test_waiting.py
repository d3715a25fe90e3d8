"""Requests waiting for a model are bounded: a queue length (429), a load timeout (503), both with Retry-After;
a client that leaves while waiting leaves the queue."""

from __future__ import annotations

from gateway.lifecycle.tests.conftest import RunningSupervisor, streaming
from gateway.tests.conftest import post
from tests.live import send_chat_request

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}
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


def test_a_request_waits_at_most_the_load_timeout_then_gets_503_with_retry_after(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, _ = two_models
    supervisor: RunningSupervisor = supervisor_factory(MODEL_LOAD_TIMEOUT=0.5)  # type: ignore[operator]

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("unavailable_error", "model_load_timeout")
    assert "MODEL_LOAD_TIMEOUT (0.5 s)" in error["message"]
    # The load itself may not take longer either: it is stopped and marked failed.
    supervisor.wait_for(model_a, lambda s: s["state"] == "failed", 10, "failed")
    assert "not ready within 0.5 s" in supervisor.state(model_a)["last_error"]
    assert supervisor.llama_servers() == []
