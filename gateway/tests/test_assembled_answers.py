"""A non-streaming client's answer, put together from llama-server's stream, equals llama-server's own whole answer."""

from __future__ import annotations

from typing import Any

import httpx

from gateway import prompts
from gateway.models import PromptFormat
from gateway.tests.conftest import post
from gateway.tests.test_request_logging import row_for

# Seeded, greedy and uncached, so two runs of one request compute exactly the same tokens and log-probabilities.
SAME_EVERY_TIME = {"seed": 42, "temperature": 0, "cache_prompt": False, "max_tokens": 12}
VARYING = ("id", "created", "model", "timings")


def whole(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without what differs between two runs; the timings' fields must match, not their values."""
    return {name: value for name, value in answer.items() if name not in VARYING} | {
        "timing_fields": sorted(answer.get("timings", {}))
    }


def direct(llama_url: str, path: str, body: dict) -> dict:
    response = httpx.post(f"{llama_url}{path}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_chat_answer_equals_llama_servers_own(
    live_gateway: str, api_key: str, chat_model: str, llama_chat: Any
) -> None:
    body = {"messages": [{"role": "user", "content": "Name three colours."}], "logprobs": True, "top_logprobs": 2,
            **SAME_EVERY_TIME}  # fmt: skip
    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": chat_model, **body})
    assert response.status_code == 200, response.text
    ours = response.json()
    theirs = direct(llama_chat.url, "/v1/chat/completions", body)
    assert whole(ours) == whole(theirs)
    assert ours["model"] == chat_model
    assert ours["choices"][0]["logprobs"]["content"]  # one entry per token, joined across chunks
    assert ours["timings"]["predicted_n"] == theirs["timings"]["predicted_n"]


def test_a_text_completion_equals_llama_servers_own(
    live_gateway: str, api_key: str, chat_model: str, llama_chat: Any
) -> None:
    body = {"prompt": "The capital of France is", **SAME_EVERY_TIME}
    response = post(live_gateway, api_key, "/v1/completions", {"model": chat_model, **body})
    assert response.status_code == 200, response.text
    assert whole(response.json()) == whole(direct(llama_chat.url, "/v1/completions", body))


def test_a_gateway_template_answer_equals_llama_servers_completion(
    live_gateway: str, api_key: str, template_model: str, llama_chat: Any
) -> None:
    messages = [{"role": "user", "content": "Name three colours."}]
    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": template_model, "messages": messages,
                                                                     **SAME_EVERY_TIME})  # fmt: skip
    assert response.status_code == 200, response.text
    ours = response.json()
    prompt, stops = prompts.render(PromptFormat.GEMMA, messages)
    theirs = direct(llama_chat.url, "/completion", {"prompt": prompt, "stop": stops, "n_predict": 12, "seed": 42,
                                                    "temperature": 0, "cache_prompt": False})  # fmt: skip
    choice = ours["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": theirs["content"]}
    assert choice["finish_reason"] == ("length" if theirs["stop_type"] == "limit" else "stop")
    assert ours["usage"] == {"prompt_tokens": theirs["tokens_evaluated"], "completion_tokens": theirs["tokens_predicted"],
                             "total_tokens": theirs["tokens_evaluated"] + theirs["tokens_predicted"]}  # fmt: skip
    assert ours["object"] == "chat.completion"


def test_a_plain_request_logs_its_real_time_to_first_token(live_gateway: str, api_key: str, chat_model: str) -> None:
    body = {"model": chat_model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20, "ignore_eos": True}
    response = post(live_gateway, api_key, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    row = row_for(response)
    generating_ms = response.json()["timings"]["predicted_ms"]
    # The first token came before the 19 that followed it: the whole answer took at least half their time more.
    assert 0 < row.ttft_ms < row.latency_ms - generating_ms / 2
