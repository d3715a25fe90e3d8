"""A backend that fails part-way through a non-streamed answer is left, and the next one answers from the start;
a streamed answer, once its first event is out, ends with one error event instead.

The fault-injection tests drive the gateway in this process and hold the live backend busy, as test_failover does,
so that the failing one is certainly tried first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from gateway import llama, routing
from gateway.models import APIKey
from gateway.registry import register_model
from gateway.tests.conftest import IDLE_WITHIN, charged, post
from gateway.tests.test_failover import answered, hi, pair, row_of
from tests.fake_llama import FakeLlama
from tests.live import ARTIFACTS
from tests.llama_server import LlamaServer
from tests.slots import seconds_until_idle

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def ask(path: str, **extra: object) -> dict:
    """A short request to model `pair` on a chat or text completions route."""
    if path == CHAT:
        return hi("pair", **extra)
    return {"model": "pair", "prompt": "Hi", "max_tokens": 2, **extra}


def events_of(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("failure", ["midstream_error", "midstream_close", "midstream_end"])
@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
async def test_a_whole_answer_starts_over_on_the_next_backend_when_one_fails_part_way(
    app_client: httpx.AsyncClient, llama_chat: Any, fake_llama: FakeLlama, settings: Any, path: str, failure: str
) -> None:
    settings.BACKEND_COOLOFF_SECONDS = 600  # longer than the test, however slow the machine
    fake_llama.behaviour = failure
    failing, live = await pair(fake_llama.url, llama_chat.url)
    with routing.occupy(live):
        response = await app_client.post(path, json=ask(path))
    assert answered(response, stream=False), response.text
    assert len(fake_llama.received) == 1  # tried first: it sent two chunks, then failed
    assert routing.is_down(failing.id)
    row = await row_of(response)
    assert (row.status, row.backend) == (200, live.target.base_url)
    usage = response.json()["usage"]
    assert (row.prompt_tokens, row.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row.ttft_ms is not None


async def test_the_key_is_charged_once_with_the_answers_tokens(
    app_client: httpx.AsyncClient, llama_chat: Any, fake_llama: FakeLlama
) -> None:
    await sync_to_async(APIKey.objects.update)(tokens_per_minute=100_000, max_concurrent=1)
    fake_llama.behaviour = "midstream_close"
    _, live = await pair(fake_llama.url, llama_chat.url)
    with routing.occupy(live):
        response = await app_client.post(CHAT, json=ask(CHAT))
    assert answered(response, stream=False), response.text
    key = await sync_to_async(APIKey.objects.get)()
    tokens, in_flight = await sync_to_async(charged)(key.pk)
    assert tokens == response.json()["usage"]["total_tokens"]
    assert in_flight == 0  # its place was given back


@pytest.mark.parametrize("failure", ["midstream_error", "midstream_close"])
@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
async def test_a_stream_that_fails_part_way_ends_with_one_error_event(
    app_client: httpx.AsyncClient, llama_chat: Any, fake_llama: FakeLlama, path: str, failure: str
) -> None:
    fake_llama.behaviour = failure
    failing, live = await pair(fake_llama.url, llama_chat.url)
    with routing.occupy(live):
        response = await app_client.post(path, json=ask(path, stream=True))
    assert response.status_code == 200
    events = events_of(response)
    assert [e for e in events if "error" in json.loads(e)] == [events[-1]]  # one, at the end, and no [DONE]
    assert sum(" tok" in e for e in events) == 2  # the two tokens the backend sent before failing
    assert (await row_of(response)).backend == failing.target.base_url


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
async def test_a_4xx_error_event_is_the_answer_not_a_reason_to_try_another_backend(
    app_client: httpx.AsyncClient, llama_chat: Any, fake_llama: FakeLlama, path: str
) -> None:
    fake_llama.behaviour = "midstream_error_400"
    failing, live = await pair(fake_llama.url, llama_chat.url)
    with routing.occupy(live):
        response = await app_client.post(path, json=ask(path))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "exceed_context_size_error"
    assert not routing.is_down(failing.id)
    assert (await row_of(response)).backend == failing.target.base_url


# --- the outside check: a real backend killed under load ---

REQUESTS, AT_ONCE = 40, 4
# Long enough answers (no early end of sequence) that requests are certainly generating when the backend dies.
LONG = {"max_tokens": 8, "ignore_eos": True}


@pytest.fixture
def doomed() -> Iterator[LlamaServer]:
    """A second real llama-server with the small model, for a test to kill."""
    ARTIFACTS.mkdir(exist_ok=True)
    server = LlamaServer(port=llama.free_port())
    try:
        server.start(log_file=ARTIFACTS / "llama-doomed.log")
    except llama.LlamaError as exc:
        pytest.fail(f"cannot start a second real llama-server: {exc}")
    yield server
    server.stop()


def kill_while_generating(server: LlamaServer, limit: float = 60) -> None:
    """SIGKILL `server` once one of its slots has generated a token: its stream has reached the gateway."""
    deadline = time.monotonic() + limit
    while not any(
        slot["is_processing"] and slot["next_token"][0]["n_decoded"] > 0
        for slot in httpx.get(f"{server.url}/slots", timeout=5).json()
    ):
        assert time.monotonic() < deadline, f"no slot of {server.url} started generating within {limit:.0f} s"
        time.sleep(0.02)
    assert server.process is not None
    server.process.kill()
    server.process.wait()


def test_every_whole_answer_is_served_when_a_backend_is_killed_under_load(
    live_gateway: str, api_key: str, llama_chat: Any, doomed: LlamaServer
) -> None:
    seconds_until_idle(llama_chat.url, limit=IDLE_WITHIN)
    register_model("pair", [llama_chat.url, doomed.url], kind="chat")
    with ThreadPoolExecutor(AT_ONCE) as pool:
        sent = [pool.submit(post, live_gateway, api_key, CHAT, hi("pair", **LONG)) for _ in range(REQUESTS)]
        kill_while_generating(doomed)
        responses = [future.result() for future in sent]
    failed = [response.text for response in responses if response.status_code != 200]
    assert not failed, f"{len(failed)} of {REQUESTS} failed, e.g. {failed[0]}"
    assert {response.json()["choices"][0]["finish_reason"] for response in responses} == {"length"}
    assert {response.json()["usage"]["completion_tokens"] for response in responses} == {LONG["max_tokens"]}
