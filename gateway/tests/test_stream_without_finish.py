"""A backend's stream that ends cleanly but before its finish (no finish reason, no `response.completed`, no
`message_stop`) is a failure: a whole answer is a 502 in the path's error shape, a stream ends with an error event
and no [DONE]; never a 200 with a cut answer. Also for one of several choices that never finishes."""

from __future__ import annotations

import json

import pytest

from gateway.outcomes import Usage
from gateway.registry import register_model
from gateway.relay import OpenAIEvents
from gateway.tests.conftest import post
from gateway.tests.test_errors import assert_openai_error
from gateway.tests.test_whole_answer_parts import chunk
from tests.fake_llama import FakeLlama

ASKS = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    "/v1/completions": {"prompt": "Hi", "max_tokens": 4},
    "/v1/responses": {"input": "Hi", "max_output_tokens": 4},
    "/v1/messages": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
}


@pytest.fixture
def cut_short(fake_llama: FakeLlama, transactional_db: None) -> FakeLlama:
    register_model("cut", [fake_llama.url], kind="chat")
    fake_llama.behaviour = "midstream_end"
    return fake_llama


@pytest.mark.parametrize("path", list(ASKS))
def test_a_whole_answer_is_a_502(live_gateway: str, api_key: str, cut_short: FakeLlama, path: str) -> None:
    response = post(live_gateway, api_key, path, {"model": "cut", **ASKS[path]})
    if path == "/v1/messages":
        assert response.status_code == 502, response.text
        assert response.json()["error"]["type"] == "api_error"  # Anthropic's shape on its path
    else:
        assert_openai_error(response, 502, "server_error")


@pytest.mark.parametrize("path", list(ASKS))
def test_a_stream_ends_with_an_error_event(live_gateway: str, api_key: str, cut_short: FakeLlama, path: str) -> None:
    response = post(live_gateway, api_key, path, {"model": "cut", "stream": True, **ASKS[path]})
    assert response.status_code == 200  # the stream had begun
    payloads = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in payloads
    last = json.loads(payloads[-1])
    assert last.get("type") == "error" if path in ("/v1/responses", "/v1/messages") else "error" in last


def test_one_of_two_choices_without_its_finish_is_not_the_end() -> None:
    events = OpenAIEvents("m", "content", include_usage=False, usage=Usage(), previews=False, n=2)
    events.absorb(chunk({"content": "a"}))
    events.absorb(chunk({}, "stop"))
    assert not events.finished  # choice 1 never came
