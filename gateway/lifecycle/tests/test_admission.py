"""Admission by heat and power, with the real small model: a soft zone queues generation requests one at a time, a
hard zone or power over the limit refuses them with 503 in OpenAI's shape (running ones finish; embeddings are never
shed), and the device recovers with hysteresis."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from gateway.lifecycle.tests.conftest import SMALL, RunningSampler, RunningSupervisor, register_managed
from gateway.models import RequestLog
from gateway.registry import register_model
from gateway.tests.conftest import post

CHAT, EMBED = "chat-model", "embed-model"
LIMITS = {"ADMISSION_TEMP_SOFT_C": 70, "ADMISSION_TEMP_HARD_C": 85, "ADMISSION_RECOVER_C": 5}


@pytest.fixture
def models(supervisor_factory: Callable[..., RunningSupervisor], small_gguf: str) -> RunningSupervisor:
    register_managed(CHAT, small_gguf, parallel=2)
    register_model(EMBED, [], managed={"gguf_path": small_gguf, **SMALL, "llama_args": "--pooling mean"},
                   kind="embedding")  # fmt: skip
    return supervisor_factory(MODEL_MEMORY_BUDGET_MB=2000)


def chat(live_gateway: str, api_key: str, tokens: int = 3) -> httpx.Response:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": tokens, "ignore_eos": True}
    return post(live_gateway, api_key, "/v1/chat/completions", body)


def embed(live_gateway: str, api_key: str) -> httpx.Response:
    return post(live_gateway, api_key, "/v1/embeddings", {"model": EMBED, "input": "hot"})


def stream_times(live_gateway: str, api_key: str, tokens: int, times: dict[str, float]) -> None:
    """Stream a reply, noting when its first token and its end arrived."""
    body = {"model": CHAT, "stream": True, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": tokens,
            "ignore_eos": True}  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.stream("POST", f"{live_gateway}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"]:
                times.setdefault("first", time.monotonic())
    times["end"] = time.monotonic()


def refused_with(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("unavailable_error", code)
    assert int(response.headers["Retry-After"]) >= 1
    row = RequestLog.objects.filter(request_id=response.headers["X-Request-Id"]).first()
    deadline = time.monotonic() + 15
    while row is None and time.monotonic() < deadline:
        time.sleep(0.1)
        row = RequestLog.objects.filter(request_id=response.headers["X-Request-Id"]).first()
    assert row is not None and (row.status, row.error_code) == (503, code)


def test_a_soft_zone_serves_generation_one_at_a_time(
    live_gateway: str, api_key: str, models: RunningSupervisor, sampler_factory: Callable[..., RunningSampler]
) -> None:
    node = sampler_factory(**LIMITS)
    assert chat(live_gateway, api_key).status_code == 200  # loaded
    node.set_temperature(75)
    node.wait_for_admission("soft")
    first: dict[str, float] = {}
    second: dict[str, float] = {}
    long = threading.Thread(target=stream_times, args=(live_gateway, api_key, 80, first))
    long.start()
    models.wait_for(CHAT, lambda s: s["in_flight"] == 1, 30, "busy")
    short = threading.Thread(target=stream_times, args=(live_gateway, api_key, 3, second))
    short.start()
    models.wait_for(CHAT, lambda s: s["waiting"] == 1, 30, "waited for")  # two slots, yet it waits its turn
    long.join(120)
    short.join(120)
    assert second["first"] > first["end"] - 0.1
    assert embed(live_gateway, api_key).status_code == 200  # embeddings never wait for heat


def test_a_hard_zone_sheds_generation_lets_running_requests_finish_and_recovers_with_hysteresis(
    live_gateway: str, api_key: str, models: RunningSupervisor, sampler_factory: Callable[..., RunningSampler]
) -> None:
    node = sampler_factory(**LIMITS)
    assert chat(live_gateway, api_key).status_code == 200
    running: dict[str, float] = {}
    before = threading.Thread(target=stream_times, args=(live_gateway, api_key, 60, running))
    before.start()
    models.wait_for(CHAT, lambda s: s["in_flight"] == 1, 30, "busy")
    node.set_temperature(90)
    node.wait_for_admission("hard")
    refused_with(chat(live_gateway, api_key), "device_overheated")
    assert embed(live_gateway, api_key).status_code == 200
    before.join(120)
    assert "end" in running  # the request already running finished (stream_times asserted its 200)
    for celsius, state in ((83, "hard"), (79, "soft"), (66, "soft"), (64, "normal")):
        node.set_temperature(celsius)
        time.sleep(1.0)  # five looks at the zone
        node.wait_for_admission(state, limit=5)
        if state == "hard":
            refused_with(chat(live_gateway, api_key), "device_overheated")
    assert chat(live_gateway, api_key).status_code == 200


def test_power_over_the_limit_for_three_readings_sheds_generation(
    live_gateway: str, api_key: str, models: RunningSupervisor, sampler_factory: Callable[..., RunningSampler]
) -> None:
    node = sampler_factory(ADMISSION_POWER_LIMIT_W=20)
    node.set_power(10)
    assert chat(live_gateway, api_key).status_code == 200
    node.set_power(25)
    node.wait_for_admission("hard")
    refused_with(chat(live_gateway, api_key), "power_limit")
    assert embed(live_gateway, api_key).status_code == 200
    node.set_power(10)
    node.wait_for_admission("normal")
    assert chat(live_gateway, api_key).status_code == 200
