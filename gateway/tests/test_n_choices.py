"""`n` choices of one chat prompt, against the real small model: this llama-server build answers `n` up to its
number of slots, one task per choice, each with its own usage. The whole answer has every choice, and its usage
counts the prompt once and every choice's tokens (as OpenAI counts them; llama-server's own whole answer keeps one
choice's). The gateway-side templates (llama.cpp's /completion) give one choice: `n` above 1 is a 400 there."""

from __future__ import annotations

import json

from gateway.tests.conftest import post
from gateway.tests.test_completions import events
from gateway.tests.test_errors import assert_openai_error
from gateway.tests.test_request_logging import row_for

CHAT = "/v1/chat/completions"
THREE = {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 3, "ignore_eos": True}


def test_a_whole_answer_has_every_choice_and_their_tokens(live_gateway: str, api_key: str, chat_model: str) -> None:
    one = post(live_gateway, api_key, CHAT, {"model": chat_model, **THREE}).json()

    response = post(live_gateway, api_key, CHAT, {"model": chat_model, "n": 2, **THREE})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert [choice["index"] for choice in answer["choices"]] == [0, 1]
    assert all(choice["message"]["role"] == "assistant" for choice in answer["choices"])
    assert {choice["finish_reason"] for choice in answer["choices"]} == {"length"}
    usage = answer["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (one["usage"]["prompt_tokens"], 2 * 3)
    row = row_for(response)
    assert (row.prompt_tokens, row.completion_tokens) == (one["usage"]["prompt_tokens"], 6)


def test_a_stream_has_every_choice_then_one_usage_chunk(live_gateway: str, api_key: str, chat_model: str) -> None:
    body = {"model": chat_model, "n": 2, "stream": True, "stream_options": {"include_usage": True}, **THREE}

    payloads = events(post(live_gateway, api_key, CHAT, body))

    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    finished = sorted(c["index"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"])
    assert finished == [0, 1]
    assert [chunk for chunk in chunks if chunk.get("usage")] == [chunks[-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_more_choices_than_one_through_a_gateway_template_is_a_400(
    live_gateway: str, api_key: str, template_model: str
) -> None:
    response = post(live_gateway, api_key, CHAT, {"model": template_model, "n": 2, **THREE})
    assert_openai_error(response, 400, "invalid_request_error", "n")
