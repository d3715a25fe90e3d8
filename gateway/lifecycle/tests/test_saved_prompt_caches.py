"""A conversation survives its model's eviction: the slot that read it is saved to disk before the model stops, and
restored into a slot before the conversation's next turn, which then reads only what is new. Another API key's
identical conversation is not served from that cache."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.lifecycle.tests.conftest import SMALL, RunningSupervisor, register_managed
from gateway.models import APIKey
from gateway.requestlog.models import RequestLog
from gateway.tests.conftest import post

# About 1,400 tokens of the small model's vocabulary: a long system prompt, as agents send.
SYSTEM = " ".join(
    f"Rule {n}: answer briefly, politely and in plain words, and never repeat rule {n}." for n in range(90)
)
GREEDY = {"temperature": 0, "seed": 7, "max_tokens": 8}
# Gemma 3 has sliding-window layers: without --swa-full a restored cache is not reused, and it is not saved.
OTHER = {**SMALL, "ctx_size": 2048}
CACHED = {**OTHER, "llama_args": "--swa-full"}


@pytest.fixture
def supervisor(
    transactional_db: None, small_gguf: str, supervisor_factory: Callable[..., RunningSupervisor]
) -> RunningSupervisor:
    """ "cached" and "other", the same GGUF, under a budget that fits one of them; saved caches swept every second."""
    register_managed("cached", small_gguf, **CACHED)
    register_managed("other", small_gguf, **OTHER)
    return supervisor_factory(MODEL_MEMORY_BUDGET_MB=600, KV_CACHE_SWEEP_SECONDS=1)


def turn(live_gateway: str, key: str, model: str, messages: list[dict]) -> dict:
    response = post(live_gateway, key, "/v1/chat/completions", {"model": model, "messages": messages, **GREEDY})
    assert response.status_code == 200, response.text
    return response.json()


def logged(request_id: str, limit: float = 10) -> RequestLog:
    deadline = time.monotonic() + limit
    while (row := RequestLog.objects.filter(request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, f"no log row for {request_id}"
        time.sleep(0.1)
    return row


def saved_files(supervisor: RunningSupervisor, model: str) -> list[Path]:
    return sorted((supervisor.var_dir / "kv" / model).glob("*.bin"))


def first_turn_then_eviction(live_gateway: str, key: str, supervisor: RunningSupervisor) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Say hello."}]
    answer = turn(live_gateway, key, "cached", messages)
    assert answer["usage"]["prompt_tokens"] >= 1000, answer["usage"]
    turn(live_gateway, key, "other", [{"role": "user", "content": "Hi"}])  # evicts "cached"
    supervisor.wait_for("cached", lambda s: s["state"] == "stopped", 30, "stopped")
    return [*messages, {"role": "assistant", "content": answer["choices"][0]["message"]["content"]},
            {"role": "user", "content": "And goodbye?"}]  # fmt: skip


def test_the_next_turn_after_an_eviction_is_read_from_the_saved_cache(
    live_gateway: str, api_key: str, supervisor: RunningSupervisor
) -> None:
    next_turn = first_turn_then_eviction(live_gateway, api_key, supervisor)
    files = saved_files(supervisor, "cached")
    assert len(files) == 1, "the evicted model's slot was not saved"
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert oct(files[0].parent.stat().st_mode & 0o777) == "0o700"
    assert supervisor.state("cached")["saved_caches"] == 1

    restored = post(live_gateway, api_key, "/v1/chat/completions", {"model": "cached", "messages": next_turn,
                                                                     **GREEDY})  # fmt: skip
    assert restored.status_code == 200, restored.text
    row = logged(restored.headers["x-request-id"])
    assert row.prompt_cache == "restored"
    assert row.cached_tokens >= 1000, row.cached_tokens  # llama-server's timings: read from the cache
    assert row.prompt_tokens - row.cached_tokens < 100

    # The same turn read from scratch by the same GGUF gives the same answer.
    from_scratch = turn(live_gateway, api_key, "other", next_turn)
    assert restored.json()["choices"][0]["message"]["content"] == from_scratch["choices"][0]["message"]["content"]
    row = logged(RequestLog.objects.filter(model_used="other").order_by("-id").first().request_id)
    assert row.prompt_cache == "none"


def test_another_keys_identical_conversation_is_not_served_from_the_cache(
    live_gateway: str, api_key: str, supervisor: RunningSupervisor
) -> None:
    next_turn = first_turn_then_eviction(live_gateway, api_key, supervisor)
    assert len(saved_files(supervisor, "cached")) == 1
    _, bob = APIKey.objects.create_key(name="bob's key")

    response = post(live_gateway, bob, "/v1/chat/completions", {"model": "cached", "messages": next_turn, **GREEDY})

    assert response.status_code == 200, response.text
    row = logged(response.headers["x-request-id"])
    assert row.prompt_cache == "none"
    assert row.cached_tokens == 0


def test_a_revoked_keys_saved_caches_are_deleted(
    live_gateway: str, api_key: str, supervisor: RunningSupervisor
) -> None:
    first_turn_then_eviction(live_gateway, api_key, supervisor)
    assert len(saved_files(supervisor, "cached")) == 1

    APIKey.objects.update(revoked=True)
    supervisor.wait_for("cached", lambda s: s["saved_caches"] == 0, 30, "no saved caches")
    assert saved_files(supervisor, "cached") == []


def test_the_messages_and_responses_apis_are_restored_too(
    live_gateway: str, api_key: str, supervisor: RunningSupervisor
) -> None:
    greedy = {"temperature": 0, "seed": 7}
    first = {"model": "cached", "system": SYSTEM, "max_tokens": 8, **greedy,
             "messages": [{"role": "user", "content": "Say hello."}]}  # fmt: skip
    answer = post(live_gateway, api_key, "/v1/messages", first).json()
    said = "".join(block.get("text", "") for block in answer["content"])
    turn(live_gateway, api_key, "other", [{"role": "user", "content": "Hi"}])
    supervisor.wait_for("cached", lambda s: s["state"] == "stopped", 30, "stopped")
    second = {**first, "messages": [*first["messages"], {"role": "assistant", "content": said},
                                    {"role": "user", "content": "And goodbye?"}]}  # fmt: skip
    response = post(live_gateway, api_key, "/v1/messages", second)
    assert response.status_code == 200, response.text
    row = logged(response.headers["x-request-id"])
    assert (row.prompt_cache, row.prompt_tokens > 1000) == ("restored", True), (row.prompt_cache, row.cached_tokens)

    items = [{"role": "user", "content": "Say hello."}]
    first_response = {"model": "cached", "instructions": SYSTEM, "max_output_tokens": 8, **greedy, "input": items}
    answer = post(live_gateway, api_key, "/v1/responses", first_response).json()
    turn(live_gateway, api_key, "other", [{"role": "user", "content": "Hi"}])
    supervisor.wait_for("cached", lambda s: s["state"] == "stopped", 30, "stopped")
    items = [*items, *answer["output"], {"role": "user", "content": "And goodbye?"}]  # as the SDKs send it back
    response = post(live_gateway, api_key, "/v1/responses", {**first_response, "input": items})
    assert response.status_code == 200, response.text
    row = logged(response.headers["x-request-id"])
    assert (row.prompt_cache, row.prompt_tokens > 1000) == ("restored", True), (row.prompt_cache, row.cached_tokens)


def test_the_drain_on_sigterm_saves_the_conversations(
    live_gateway: str, api_key: str, transactional_db: None, small_gguf: str, supervisor_factory: object
) -> None:
    register_managed("cached", small_gguf, **CACHED)
    supervisor: RunningSupervisor = supervisor_factory()  # type: ignore[operator]
    turn(live_gateway, api_key, "cached", [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}])
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.process.wait(60) == 0
    assert len(saved_files(supervisor, "cached")) == 1
