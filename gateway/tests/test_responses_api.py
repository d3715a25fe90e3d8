"""OpenAI's Responses API through the gateway, with the official SDK, over the real small model: plain and streamed,
the public model id in place of the GGUF path, the usage read from `response.completed` into the request's row;
stateless as llama-server is (previous_response_id is a clear 400)."""

from __future__ import annotations

import openai
import pytest

from tests.live import logged_row

PROMPT = "Say hello."


def test_responses_create_answers_with_the_public_model_id_and_logs_its_tokens(
    client: openai.OpenAI, chat_model: str
) -> None:
    response = client.responses.with_raw_response.create(model=chat_model, input=PROMPT, max_output_tokens=8)
    answer = response.parse()

    assert answer.model == chat_model
    assert answer.status == "completed"
    assert answer.output_text
    assert answer.usage is not None and answer.usage.output_tokens == 8
    row = logged_row(response.headers["x-request-id"])
    assert (row.endpoint, row.status, row.model_used) == ("/v1/responses", 200, chat_model)
    assert (row.prompt_tokens, row.completion_tokens) == (answer.usage.input_tokens, answer.usage.output_tokens)
    assert row.ttft_ms is not None


def test_a_streamed_response_keeps_every_event_type_and_its_usage_reaches_the_row(
    client: openai.OpenAI, chat_model: str
) -> None:
    with client.responses.with_streaming_response.create(
        model=chat_model, input=PROMPT, max_output_tokens=8, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        events = list(response.parse())

    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert {"response.output_item.added", "response.output_text.delta", "response.output_item.done"} <= set(kinds)
    completed = events[-1].response
    assert completed.model == chat_model
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == completed.output_text
    row = logged_row(request_id)
    assert (row.stream, row.completion_tokens) == (True, completed.usage.output_tokens)


def test_previous_response_id_is_refused_clearly_the_gateway_keeps_no_responses(
    client: openai.OpenAI, chat_model: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=chat_model, input=PROMPT, previous_response_id="resp_1")

    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "stateless" in refused.value.body["message"]  # type: ignore[index]


def test_input_tokens_are_counted_by_the_models_server_and_not_charged(
    client: openai.OpenAI, chat_model: str, live_gateway: str, api_key: str
) -> None:
    from gateway.tests.conftest import post

    response = post(live_gateway, api_key, "/v1/responses/input_tokens", {"model": chat_model, "input": PROMPT})

    assert response.status_code == 200, response.text
    assert response.json()["input_tokens"] > 0
    row = logged_row(response.headers["X-Request-Id"])
    assert (row.prompt_tokens, row.completion_tokens) == (None, None)
