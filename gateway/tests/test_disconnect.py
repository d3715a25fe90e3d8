"""A client that goes away cancels the upstream request: the real llama-server frees its slot."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from gateway.tests.conftest import post

# ignore_eos makes the small model generate all of it: far longer than the test waits, unless cancelled.
LONG = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 800, "ignore_eos": True}


def busy_slots(llama_url: str) -> int:
    return sum(1 for slot in httpx.get(f"{llama_url}/slots", timeout=5).json() if slot["is_processing"])


def tokens_predicted(llama_url: str) -> int:
    for line in httpx.get(f"{llama_url}/metrics", timeout=5).text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total"):
            return int(float(line.split()[1]))
    raise AssertionError("llama-server's /metrics has no tokens_predicted_total")


def wait_until_idle(llama_url: str, limit: float = 20) -> float:
    started = time.monotonic()
    while busy_slots(llama_url):
        if time.monotonic() - started > limit:
            raise AssertionError(f"the slot was still busy {limit:.0f} s after the client went away")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def idle_llama(llama_chat: object) -> str:
    url = llama_chat.url  # type: ignore[attr-defined]
    wait_until_idle(url, limit=120)  # a previous test's generation must not be mistaken for ours
    return url


def test_a_stream_closed_by_the_client_frees_the_slot(
    live_gateway: str, api_key: str, chat_model: str, idle_llama: str
) -> None:
    before = tokens_predicted(idle_llama)
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {"model": chat_model, "stream": True, **LONG}
    with httpx.stream(
        "POST", f"{live_gateway}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        lines = response.iter_lines()
        contents = 0
        for line in lines:
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                contents += 1
            if contents == 3:
                break
        assert busy_slots(idle_llama) == 1
    freed_after = wait_until_idle(idle_llama)
    generated = tokens_predicted(idle_llama) - before
    print(f"slot freed {freed_after * 1000:.0f} ms after the client closed; {generated} of 800 tokens generated")
    assert generated < 800


def test_a_plain_request_abandoned_by_the_client_frees_the_slot(
    live_gateway: str, api_key: str, chat_model: str, idle_llama: str
) -> None:
    before = tokens_predicted(idle_llama)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live_gateway}/v1/chat/completions",
            json={"model": chat_model, **LONG},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(60, read=2),
        )
    freed_after = wait_until_idle(idle_llama)
    generated = tokens_predicted(idle_llama) - before
    print(f"slot freed {freed_after * 1000:.0f} ms after the client left; {generated} of 800 tokens generated")
    assert 0 < generated < 800


def test_the_gateway_stays_usable_after_a_disconnect(live_gateway: str, api_key: str, chat_model: str) -> None:
    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": chat_model, **LONG, "max_tokens": 2})
    assert response.status_code == 200
