"""Per-key limits hold in the shared store (database, or Redis when REDIS_URL is set): 429 with Retry-After."""

from __future__ import annotations

import threading

import pytest

from gateway.models import APIKey
from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.fake_llama import FakeLlama

CHAT = "/v1/chat/completions"
BODY = {"model": "faked", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


@pytest.fixture
def faked(fake_llama: FakeLlama, transactional_db: None) -> FakeLlama:
    register_model("faked", [fake_llama.url], kind="chat", request_timeout=5)
    return fake_llama


def limited_key(**limits: int) -> str:
    _, plaintext = APIKey.objects.create_key(name="limited", **limits)
    return plaintext


def test_it_refuses_requests_over_the_per_minute_limit(live_gateway: str, faked: FakeLlama) -> None:
    key = limited_key(requests_per_minute=2)
    statuses = [post(live_gateway, key, CHAT, BODY).status_code for _ in range(2)]
    refused = post(live_gateway, key, CHAT, BODY)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(faked.received) == 2  # the refused request never reached the backend


def test_the_limit_is_per_key(live_gateway: str, faked: FakeLlama) -> None:
    first, second = limited_key(requests_per_minute=1), limited_key(requests_per_minute=1)
    assert post(live_gateway, first, CHAT, BODY).status_code == 200
    assert post(live_gateway, second, CHAT, BODY).status_code == 200
    assert post(live_gateway, first, CHAT, BODY).status_code == 429


def test_it_refuses_requests_over_the_tokens_per_minute_limit(live_gateway: str, faked: FakeLlama) -> None:
    key = limited_key(tokens_per_minute=10)  # the fake's answer costs 5 + 16 tokens
    assert post(live_gateway, key, CHAT, BODY).status_code == 200
    refused = post(live_gateway, key, CHAT, BODY)
    assert refused.status_code == 429
    assert "tokens per minute" in refused.json()["error"]["message"]


def test_it_refuses_requests_over_the_concurrency_limit(live_gateway: str, faked: FakeLlama) -> None:
    key = limited_key(max_concurrent=1)
    faked.behaviour = "silent"
    slow = threading.Thread(target=post, args=(live_gateway, key, CHAT, BODY))
    slow.start()
    try:
        for _ in range(100):  # wait until the slow request has reached the backend
            if faked.received:
                break
            threading.Event().wait(0.05)
        assert faked.received, "the first request never reached the backend"
        refused = post(live_gateway, key, CHAT, BODY)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
    finally:
        slow.join(30)
    # The slow one timed out (504) and gave its place back.
    faked.behaviour = "ok"
    assert post(live_gateway, key, CHAT, BODY).status_code == 200
