"""A text completion with a list of prompts, against the real small model: llama-server answers each prompt as a task
of its own, with its own usage; the whole answer has one choice per prompt, and the usage, the log row and the
key's token count are all the prompts', not the last one's (llama-server's own whole answer keeps the last)."""

from __future__ import annotations

import json

from gateway.models import APIKey
from gateway.tests.conftest import charged, post
from gateway.tests.test_completions import events
from gateway.tests.test_request_logging import row_for

COMPLETIONS = "/v1/completions"
# Of different lengths, so that the last one's count is not the sum.
PROMPTS = ["Once upon a time, in a small village, there lived", "The sky is"]
# Exactly four tokens each.
FOUR = {"max_tokens": 4, "ignore_eos": True, "temperature": 0, "seed": 7}


def prompt_tokens(live_gateway: str, api_key: str, model: str, prompt: str) -> int:
    response = post(live_gateway, api_key, COMPLETIONS, {"model": model, "prompt": prompt, **FOUR})
    assert response.status_code == 200, response.text
    return response.json()["usage"]["prompt_tokens"]


def test_a_whole_answer_has_a_choice_per_prompt_and_counts_every_prompt(
    live_gateway: str, api_key: str, chat_model: str
) -> None:
    alone = [prompt_tokens(live_gateway, api_key, chat_model, prompt) for prompt in PROMPTS]
    APIKey.objects.update(tokens_per_minute=1_000_000)  # counted

    response = post(live_gateway, api_key, COMPLETIONS, {"model": chat_model, "prompt": PROMPTS, **FOUR})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert [choice["index"] for choice in answer["choices"]] == [0, 1]
    assert all(choice["text"] and choice["finish_reason"] == "length" for choice in answer["choices"])
    usage = answer["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (sum(alone), 2 * 4)
    assert usage["total_tokens"] == sum(alone) + 8
    row = row_for(response)
    assert (row.prompt_tokens, row.completion_tokens) == (sum(alone), 8)
    assert charged(APIKey.objects.get().pk)[0] == sum(alone) + 8


def test_a_stream_ends_with_one_usage_chunk_for_every_prompt(live_gateway: str, api_key: str, chat_model: str) -> None:
    alone = [prompt_tokens(live_gateway, api_key, chat_model, prompt) for prompt in PROMPTS]
    body = {"model": chat_model, "prompt": PROMPTS, "stream": True, "stream_options": {"include_usage": True}, **FOUR}

    payloads = events(post(live_gateway, api_key, COMPLETIONS, body))

    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    finished = sorted(c["index"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"])
    assert finished == [0, 1]
    with_usage = [chunk for chunk in chunks if chunk.get("usage")]
    assert with_usage == [chunks[-1]]  # one, last, with no choices, as OpenAI sends it
    assert chunks[-1]["choices"] == []
    assert (chunks[-1]["usage"]["prompt_tokens"], chunks[-1]["usage"]["completion_tokens"]) == (sum(alone), 8)
