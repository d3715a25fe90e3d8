"""A backend that refuses connections or fails with 5xx is skipped and sits out its cool-off; with none left, 503.

The failover tests drive the gateway in this process, where they hold the live backend busy (`routing.occupy`, as
one request in flight there would): the failing backend is then strictly the least loaded, so routing certainly
tries it first.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from gateway import requestlog, routing
from gateway.llama import free_port
from gateway.models import Backend, RequestLog
from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.fake_llama import FakeLlama

CHAT = "/v1/chat/completions"


def hi(model: str, **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **extra}


async def pair(failing_url: str, live_url: str) -> tuple[routing.BackendInfo, routing.BackendInfo]:
    """Model `pair` with a failing backend and a live one, as routing sees them."""
    await sync_to_async(register_model)("pair", [failing_url, live_url], kind="chat")
    backends = {backend.target.base_url: backend for backend in (await routing.registry())["pair"].backends}
    return backends[failing_url], backends[live_url]


def answered(response: httpx.Response, stream: bool) -> bool:
    """A whole answer: a completion, or a stream that reached its finish reason and [DONE]."""
    if response.status_code != 200:
        return False
    if not stream:
        return response.json()["choices"][0]["finish_reason"] in {"stop", "length"}
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    finish = [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-1] if json.loads(e)["choices"]]
    return events[-1] == "[DONE]" and finish[-1] in {"stop", "length"}


async def row_of(response: httpx.Response) -> RequestLog:
    """The log row of a response the gateway in this process served."""
    await asyncio.to_thread(requestlog.flush, 10)
    return await sync_to_async(RequestLog.objects.get)(request_id=response.headers["X-Request-Id"])


async def backend_of(response: httpx.Response) -> str:
    return (await row_of(response)).backend


@pytest.mark.parametrize("stream", [False, True])
async def test_it_moves_to_the_live_backend_when_one_is_stopped(
    app_client: httpx.AsyncClient, llama_chat: Any, stream: bool
) -> None:
    stopped, live = await pair(f"http://127.0.0.1:{free_port()}", llama_chat.url)  # nothing listens there
    with routing.occupy(live):
        response = await app_client.post(CHAT, json=hi("pair", stream=stream))
    assert answered(response, stream), response.text
    assert await backend_of(response) == live.target.base_url
    # The stopped one was tried first: it failed and now sits out its cool-off.
    assert routing.is_down(stopped.id)
    assert not routing.is_down(live.id)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_backend_failing_with_5xx_is_tried_once_then_sits_out_its_cool_off(
    app_client: httpx.AsyncClient, llama_chat: Any, fake_llama: FakeLlama, settings: Any, stream: bool
) -> None:
    settings.BACKEND_COOLOFF_SECONDS = 600  # longer than the test, however slow the machine
    fake_llama.behaviour = "error_500"
    failing, live = await pair(fake_llama.url, llama_chat.url)
    with routing.occupy(live):
        responses = [await app_client.post(CHAT, json=hi("pair", stream=stream)) for _ in range(3)]
    assert [answered(response, stream) for response in responses] == [True, True, True]
    # Tried by the first request (still the least loaded for the next two), then left alone while cooling off.
    assert len(fake_llama.received) == 1
    assert routing.is_down(failing.id)
    assert [await backend_of(response) for response in responses] == [live.target.base_url] * 3


async def test_a_failed_backend_is_tried_again_after_its_cool_off(
    app_client: httpx.AsyncClient, llama_chat: Any, fake_llama: FakeLlama, settings: Any
) -> None:
    settings.BACKEND_COOLOFF_SECONDS = 1
    fake_llama.behaviour = "error_500"
    failing, live = await pair(fake_llama.url, llama_chat.url)
    with routing.occupy(live):
        assert answered(await app_client.post(CHAT, json=hi("pair")), stream=False)
        assert len(fake_llama.received) == 1
        marked = time.monotonic()
        while routing.is_down(failing.id):
            assert time.monotonic() - marked < 5, "the cool-off of 1 s did not end"
            await asyncio.sleep(0.05)
        fake_llama.behaviour = "ok"  # recovered meanwhile
        response = await app_client.post(CHAT, json=hi("pair"))
    assert response.status_code == 200
    assert len(fake_llama.received) == 2
    assert await backend_of(response) == failing.target.base_url


def test_it_answers_503_when_no_backend_is_left(live_gateway: str, api_key: str, transactional_db: None) -> None:
    register_model("gone", [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"], kind="chat")
    response = post(live_gateway, api_key, CHAT, hi("gone"))
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "unavailable_error"
    stream = post(live_gateway, api_key, CHAT, hi("gone", stream=True))
    assert stream.status_code == 503


def test_it_answers_503_when_every_backend_is_disabled(live_gateway: str, api_key: str, chat_model: str) -> None:
    Backend.objects.update(enabled=False)
    assert post(live_gateway, api_key, CHAT, hi(chat_model)).status_code == 503


@pytest.mark.parametrize("stream", [False, True])
def test_it_answers_504_when_the_backend_times_out(
    live_gateway: str, api_key: str, fake_llama: FakeLlama, transactional_db: None, stream: bool
) -> None:
    fake_llama.behaviour = "silent"
    register_model("slow", [fake_llama.url], kind="chat", request_timeout=1)
    response = post(live_gateway, api_key, CHAT, hi("slow", stream=stream))
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
