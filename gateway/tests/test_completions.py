"""Legacy text completions (/v1/completions), streamed and not, against the real small model."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gateway.tests.conftest import post
from gateway.tests.test_errors import assert_openai_error
from gateway.tests.test_request_logging import row_for

COMPLETIONS = "/v1/completions"
# Greedy, seeded and uncached: the same request computes the same tokens, streamed or not.
GREEDY = {"prompt": "Once upon a time, in a small village,", "temperature": 0, "seed": 7, "cache_prompt": False}


def events(response: httpx.Response) -> list[str]:
    """The payloads of a server-sent event stream, in order."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]


def test_it_completes_text_with_usage(client: openai.OpenAI, chat_model: str) -> None:
    response = client.completions.create(model=chat_model, prompt=GREEDY["prompt"], max_tokens=4, temperature=0)
    assert response.object == "text_completion"
    assert response.model == chat_model
    [choice] = response.choices
    assert choice.text.strip()
    assert choice.finish_reason == "length"  # four tokens cannot finish the story
    assert response.usage.completion_tokens == 4
    assert response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + 4


def test_it_stops_at_a_stop_string(live_gateway: str, api_key: str, chat_model: str) -> None:
    free = post(live_gateway, api_key, COMPLETIONS, {"model": chat_model, "max_tokens": 12, **GREEDY}).json()
    words = free["choices"][0]["text"].split()
    if len(words) < 3:
        pytest.fail(f"the model's answer is too short to pick a stop word from: {free['choices'][0]['text']!r}")
    stop = words[2]
    body = {"model": chat_model, "max_tokens": 12, "stop": stop, **GREEDY}
    stopped = post(live_gateway, api_key, COMPLETIONS, body).json()
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stop not in stopped["choices"][0]["text"]
    assert stopped["choices"][0]["text"] in free["choices"][0]["text"]
    assert stopped["usage"]["completion_tokens"] < 12


def test_it_streams_the_same_text_in_chunks_then_done(live_gateway: str, api_key: str, chat_model: str) -> None:
    body = {"model": chat_model, "max_tokens": 6, **GREEDY}
    whole = post(live_gateway, api_key, COMPLETIONS, body).json()
    payloads = events(post(live_gateway, api_key, COMPLETIONS, {**body, "stream": True}))
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert all(chunk["object"] == "text_completion" and chunk["model"] == chat_model for chunk in chunks)
    assert all(chunk.get("usage") is None for chunk in chunks)  # not asked for
    texts = [chunk["choices"][0]["text"] for chunk in chunks]
    assert len([text for text in texts if text]) > 1  # streamed piece by piece, not in one go
    assert "".join(texts) == whole["choices"][0]["text"]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks][-1] == "length"
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])


def test_it_ends_the_stream_with_usage_when_asked(client: openai.OpenAI, chat_model: str) -> None:
    stream = client.completions.create(
        model=chat_model,
        prompt=GREEDY["prompt"],
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    # As OpenAI does: one more chunk after the finish reason, with no choices, carries the usage; no other does.
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.prompt_tokens > 0
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_it_logs_a_streamed_completion(live_gateway: str, api_key: str, chat_model: str) -> None:
    response = post(
        live_gateway, api_key, COMPLETIONS, {"model": chat_model, "max_tokens": 3, "stream": True, **GREEDY}
    )
    row = row_for(response)
    assert (row.endpoint, row.status, row.model_used) == (COMPLETIONS, 200, chat_model)
    assert row.stream and row.completion_tokens == 3
    assert 0 < row.ttft_ms <= row.latency_ms


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 2}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "Hi", "echo": True}, "echo"),
        ({"prompt": "Hi", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_it_names_the_bad_field(live_gateway: str, api_key: str, chat_model: str, body: dict, param: str) -> None:
    response = post(live_gateway, api_key, COMPLETIONS, {"model": chat_model, **body})
    assert_openai_error(response, 400, "invalid_request_error", param)


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_over_the_context_is_the_backends_400(
    live_gateway: str, api_key: str, chat_model: str, stream: bool
) -> None:
    # Refused before any token: a streaming client gets a plain error too, not an event stream.
    body = {"model": chat_model, "prompt": "word " * 5000, "max_tokens": 2, "stream": stream}
    error = assert_openai_error(post(live_gateway, api_key, COMPLETIONS, body), 400, "exceed_context_size_error")
    assert "context" in error["message"]
