"""Chat completions through the official openai SDK, against the real small model, on both prompt routes."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture(params=["server", "template"])
def any_chat_model(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("chat_model" if request.param == "server" else "template_model")


def test_it_answers_with_generated_text_and_usage(client: openai.OpenAI, any_chat_model: str) -> None:
    response = client.chat.completions.create(
        model=any_chat_model, messages=[{"role": "user", "content": "Say hello"}], max_tokens=6, temperature=0
    )
    assert response.model == any_chat_model
    assert response.object == "chat.completion"
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 6
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_it_reports_length_when_max_tokens_cuts_the_answer(client: openai.OpenAI, any_chat_model: str) -> None:
    response = client.chat.completions.create(
        model=any_chat_model,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=3,
        temperature=0,
        seed=1,
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_it_streams_role_first_then_content_then_finish_reason(client: openai.OpenAI, any_chat_model: str) -> None:
    stream = client.chat.completions.create(
        model=any_chat_model, messages=[{"role": "user", "content": "Count: one, two,"}], max_tokens=5, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.model == any_chat_model for c in chunks)
    assert all(c.usage is None for c in chunks)  # not asked for


def test_it_adds_a_usage_chunk_when_asked(client: openai.OpenAI, any_chat_model: str) -> None:
    stream = client.chat.completions.create(
        model=any_chat_model,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 4
    assert last.usage.prompt_tokens > 0


def test_it_stops_at_a_stop_string_given_as_a_plain_string(client: openai.OpenAI, any_chat_model: str) -> None:
    messages = [{"role": "user", "content": "Repeat exactly: apple banana apple banana apple banana"}]
    free = client.chat.completions.create(model=any_chat_model, messages=messages, max_tokens=12, temperature=0, seed=3)
    words = (free.choices[0].message.content or "").split()
    if len(words) < 2:
        pytest.fail(f"the model's answer is too short to pick a stop word from: {free.choices[0].message.content!r}")
    stop = words[1]
    stopped = client.chat.completions.create(
        model=any_chat_model, messages=messages, max_tokens=12, temperature=0, seed=3, stop=stop
    )
    assert stop not in (stopped.choices[0].message.content or "")
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens < 12


def test_it_returns_the_request_id_header(live_gateway: str, api_key: str, chat_model: str) -> None:
    raw = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key, max_retries=0)
    response = raw.chat.completions.with_raw_response.create(
        model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    assert len(response.headers["x-request-id"]) == 32
