"""A process caches API keys and the model registry for a few seconds: a revoked key or a disabled model keeps
working while cached, and is refused within API_KEY_CACHE_SECONDS / REGISTRY_CACHE_SECONDS.

The rest of the suite runs with both caches off; here a daphne of its own has them on. Both sides of the promise
are exact, whatever the machine's speed: a request that reached the server before the cached entry can have
expired must be served, and every request sent once it must have expired must be refused (the server compares
the same monotonic clock).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.models import APIKey, LLMModel
from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.live import database_url, start_daphne, stop_process
from tests.settle import settle_live_server

CACHE_SECONDS = 2.0


@pytest.fixture
def caching_gateway(transactional_db: None) -> Iterator[str]:
    """A daphne of its own with both caches on: new for each test, so that nothing is cached when it starts."""
    process, url = start_daphne(
        {"DATABASE_URL": database_url(), "LOG_FLUSH_INTERVAL": "0.1",
         "API_KEY_CACHE_SECONDS": str(CACHE_SECONDS), "REGISTRY_CACHE_SECONDS": str(CACHE_SECONDS)}
    )  # fmt: skip
    try:
        yield url
        settle_live_server(url)
    finally:
        stop_process(process)


def get(url: str, key: str, path: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def served_while_cached(url: str, key: str, path: str, cached_since: float) -> int:
    """The status of a request that reached the server before an entry cached after `cached_since` can expire."""
    response = get(url, key, path)
    if time.monotonic() >= cached_since + CACHE_SECONDS:
        pytest.fail(f"this machine took over {CACHE_SECONDS} s for two requests: the cached entry may have expired")
    return response.status_code


def watch(url: str, key: str, path: str, expired_by: float) -> list[tuple[float, int]]:
    """(sent at, status) of requests for `path`, one after another, until two were sent after `expired_by`."""
    seen: list[tuple[float, int]] = []
    while sum(sent >= expired_by for sent, _ in seen) < 2:
        sent = time.monotonic()
        seen.append((sent, get(url, key, path).status_code))
        time.sleep(0.05)
    return seen


def test_a_revoked_key_works_while_cached_and_is_refused_within_the_cache_time(
    caching_gateway: str, api_key: str
) -> None:
    before_first = time.monotonic()
    assert get(caching_gateway, api_key, "/v1/models").status_code == 200  # the server caches the key
    APIKey.objects.update(revoked=True)
    revoked = time.monotonic()
    assert served_while_cached(caching_gateway, api_key, "/v1/models", before_first) == 200
    seen = watch(caching_gateway, api_key, "/v1/models", expired_by=revoked + CACHE_SECONDS)
    statuses = [status for _, status in seen]
    assert set(statuses) == {200, 401} and statuses == sorted(statuses), statuses  # served, then refused for good
    assert {status for sent, status in seen if sent >= revoked + CACHE_SECONDS} == {401}
    refused = get(caching_gateway, api_key, "/v1/models").json()["error"]
    assert refused["type"] == "authentication_error" and "revoked" in refused["message"]


def test_a_disabled_model_is_served_while_cached_and_gone_within_the_cache_time(
    caching_gateway: str, api_key: str, llama_chat: Any
) -> None:
    register_model("cached", [llama_chat.url], kind="chat")
    before_first = time.monotonic()
    assert get(caching_gateway, api_key, "/v1/models/cached").status_code == 200  # the server caches the registry
    LLMModel.objects.update(enabled=False)
    disabled = time.monotonic()
    assert served_while_cached(caching_gateway, api_key, "/v1/models/cached", before_first) == 200
    seen = watch(caching_gateway, api_key, "/v1/models/cached", expired_by=disabled + CACHE_SECONDS)
    statuses = [status for _, status in seen]
    assert set(statuses) == {200, 404} and statuses == sorted(statuses), statuses
    assert {status for sent, status in seen if sent >= disabled + CACHE_SECONDS} == {404}
    # Gone for generation too, and from the list.
    chat = {"model": "cached", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    assert post(caching_gateway, api_key, "/v1/chat/completions", chat).status_code == 404
    assert get(caching_gateway, api_key, "/v1/models").json()["data"] == []
