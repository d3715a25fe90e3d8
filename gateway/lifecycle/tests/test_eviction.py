"""When a model does not fit, idle models are stopped (least recently used first); busy ones never are."""

from __future__ import annotations

import json
import threading
import time

import httpx

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}


def test_a_request_for_b_unloads_idle_a_and_starts_b(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, model_b = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    pid_a = supervisor.state(model_a)["pid"]

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_b, **HELLO})

    assert response.status_code == 200, response.text
    status = supervisor.status()
    assert status[model_a]["state"] == "stopped"
    assert status[model_b]["state"] == "ready"
    assert [p.pid for p in supervisor.llama_servers()] == [status[model_b]["pid"]]
    assert pid_a != status[model_b]["pid"]


def test_a_request_for_a_while_b_streams_waits_and_is_served_after(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, model_b = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_b, **HELLO}).status_code == 200
    stream_ended = threading.Event()
    events: list[str] = []

    def stream_from_b() -> None:
        body = {"model": model_b, "stream": True, "messages": HELLO["messages"], "max_tokens": 60, "ignore_eos": True}
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.stream("POST", f"{live_gateway}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
        stream_ended.set()

    streaming = threading.Thread(target=stream_from_b)
    streaming.start()
    supervisor.wait_for(model_b, lambda s: s["in_flight"] == 1, 30, "busy")

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})
    answered_at_end = stream_ended.is_set()
    streaming.join(60)

    assert response.status_code == 200, response.text
    assert answered_at_end, "A was served before B's stream had ended"
    assert len(events) >= 60  # B's stream was never cut off
    assert supervisor.state(model_b)["state"] == "stopped"
    assert supervisor.state(model_a)["state"] == "ready"


def test_the_least_recently_used_idle_model_goes_first(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object, small_gguf: str
) -> None:
    from gateway.lifecycle.tests.conftest import register_managed

    model_a, model_b = two_models
    register_managed("model-c", small_gguf)
    supervisor = supervisor_factory(MODEL_MEMORY_BUDGET_MB=850)  # type: ignore[operator]  # two fit, not three
    for model in (model_a, model_b, model_a):  # B is now the least recently used
        assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model, **HELLO}).status_code == 200
        time.sleep(0.05)

    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": "model-c", **HELLO}).status_code == 200

    status = supervisor.status()
    assert {name: s["state"] for name, s in status.items()} == {
        model_a: "ready",
        model_b: "stopped",
        "model-c": "ready",
    }
