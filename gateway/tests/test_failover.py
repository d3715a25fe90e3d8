"""A backend that refuses connections or fails with 5xx is skipped; with none left the answer is 503."""

from __future__ import annotations

import openai
import pytest

from gateway.llama import free_port
from gateway.models import Backend
from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.fake_llama import FakeLlama

CHAT = "/v1/chat/completions"


def hi(model: str, **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **extra}


def test_it_moves_to_the_live_backend_when_one_is_stopped(
    client: openai.OpenAI, llama_chat: object, transactional_db: None
) -> None:
    stopped = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    register_model("pair", [stopped, llama_chat.url], kind="chat")  # type: ignore[attr-defined]
    # Several requests: whichever backend the router picks first, every one must be answered by the live one.
    for _ in range(4):
        response = client.chat.completions.create(
            model="pair", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
        assert response.choices[0].message.content is not None


def test_it_moves_on_when_a_stream_cannot_start(
    client: openai.OpenAI, llama_chat: object, transactional_db: None
) -> None:
    stopped = f"http://127.0.0.1:{free_port()}"
    register_model("pair", [stopped, llama_chat.url], kind="chat")  # type: ignore[attr-defined]
    for _ in range(3):
        chunks = list(
            client.chat.completions.create(
                model="pair", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, stream=True
            )
        )
        assert chunks[-1].choices[0].finish_reason == "length"


def test_it_moves_on_after_a_5xx(
    live_gateway: str, api_key: str, llama_chat: object, fake_llama: FakeLlama, transactional_db: None
) -> None:
    fake_llama.behaviour = "error_500"
    register_model("pair", [fake_llama.url, llama_chat.url], kind="chat")  # type: ignore[attr-defined]
    for _ in range(3):
        assert post(live_gateway, api_key, CHAT, hi("pair")).status_code == 200
    # The failing backend was tried at most once: then it sat out its cool-off.
    assert len(fake_llama.received) <= 1


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
