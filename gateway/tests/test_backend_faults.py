"""What llama-server receives, and what the client sees when the backend fails part-way."""

from __future__ import annotations

import json

import pytest

from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.fake_llama import FakeLlama

CHAT = "/v1/chat/completions"


@pytest.fixture
def faked(fake_llama: FakeLlama, transactional_db: None) -> FakeLlama:
    register_model("faked", [fake_llama.url], kind="chat")
    return fake_llama


def hi(**extra: object) -> dict:
    return {"model": "faked", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **extra}


def test_it_never_forwards_client_headers(live_gateway: str, api_key: str, faked: FakeLlama) -> None:
    post(live_gateway, api_key, CHAT, hi(), headers={"X-Conversation-Id": "abc", "Cookie": "session=1"})
    sent = {name.lower() for name in faked.received[0]["headers"]}
    assert "x-conversation-id" not in sent
    assert "cookie" not in sent
    assert "authorization" not in sent  # the client's key never reaches the backend


def test_it_sends_the_backends_own_key(live_gateway: str, api_key: str, faked: FakeLlama) -> None:
    from gateway.models import Backend

    Backend.objects.update(api_key="backend-secret")
    post(live_gateway, api_key, CHAT, hi())
    assert faked.received[0]["headers"]["Authorization"] == "Bearer backend-secret"


def test_it_passes_unknown_fields_on_to_llama_server(live_gateway: str, api_key: str, faked: FakeLlama) -> None:
    post(live_gateway, api_key, CHAT, hi(top_k=7, min_p=0.05, stop="END", response_format={"type": "json_object"}))
    sent = faked.received[0]["json"]
    assert sent["top_k"] == 7
    assert sent["min_p"] == 0.05
    assert sent["stop"] == ["END"]
    assert sent["response_format"] == {"type": "json_object"}


def test_it_applies_model_defaults_and_the_max_tokens_cap(live_gateway: str, api_key: str, faked: FakeLlama) -> None:
    from gateway.models import LLMModel

    LLMModel.objects.update(default_params={"temperature": 0.2, "top_k": 20}, max_tokens_cap=3)
    post(live_gateway, api_key, CHAT, hi(max_tokens=100, top_k=5))
    sent = faked.received[0]["json"]
    assert sent["temperature"] == 0.2
    assert sent["top_k"] == 5  # the request wins over the model's default
    assert sent["max_tokens"] == 3


def test_a_failure_mid_stream_gives_one_error_event_then_the_end(
    live_gateway: str, api_key: str, faked: FakeLlama
) -> None:
    faked.behaviour = "midstream_error"
    response = post(live_gateway, api_key, CHAT, hi(stream=True))
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert "error" in json.loads(events[-1])
    assert sum("error" in json.loads(e) for e in events if e != "[DONE]") == 1
    assert "[DONE]" not in events


def test_it_sends_keepalives_while_the_backend_is_silent(
    live_gateway: str, api_key: str, faked: FakeLlama, transactional_db: None
) -> None:
    from gateway.models import LLMModel

    faked.behaviour = "slow_stream"
    LLMModel.objects.update(request_timeout=30)
    response = post(live_gateway, api_key, CHAT, hi(stream=True))
    assert ": keep-alive" in response.text
    assert "data: [DONE]" in response.text


def test_streams_are_not_buffered(live_gateway: str, api_key: str, faked: FakeLlama) -> None:
    response = post(live_gateway, api_key, CHAT, hi(stream=True))
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-cache"
