"""Anthropic's Messages API through the gateway, with the official SDK, over the real small model: `x-api-key` as the
SDKs and Claude Code send it, `messages.create`, `messages.stream`, `messages.count_tokens`, errors in Anthropic's
shape (a wrong key is the SDK's AuthenticationError), and every call's row with its tokens."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from gateway.tests.conftest import post
from tests.live import logged_row

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def claude(live_gateway: str, api_key: str) -> anthropic.Anthropic:
    """The official SDK pointed at the gateway as Claude Code is: ANTHROPIC_BASE_URL and the key as x-api-key."""
    return anthropic.Anthropic(base_url=live_gateway, api_key=api_key, max_retries=0, timeout=120)


def test_messages_create_answers_a_message_with_the_public_model_id_and_logs_its_tokens(
    claude: anthropic.Anthropic, chat_model: str
) -> None:
    response = claude.messages.with_raw_response.create(model=chat_model, max_tokens=8, messages=HELLO)
    message = response.parse()

    assert (message.type, message.role, message.model) == ("message", "assistant", chat_model)
    assert message.stop_reason == "max_tokens"
    assert message.content and message.content[0].type == "text" and message.content[0].text
    row = logged_row(response.headers["x-request-id"])
    assert (row.endpoint, row.status, row.completion_tokens) == ("/v1/messages", 200, message.usage.output_tokens)
    prompt = message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)
    assert row.prompt_tokens == prompt  # the whole prompt, cached or not


def test_messages_stream_gives_the_sdk_its_events_and_the_final_message(
    claude: anthropic.Anthropic, chat_model: str
) -> None:
    with claude.messages.stream(model=chat_model, max_tokens=8, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]

    assert final.model == chat_model and final.stop_reason == "max_tokens"
    assert text == final.content[0].text
    row = logged_row(request_id)
    assert (row.stream, row.completion_tokens) == (True, final.usage.output_tokens)
    assert row.ttft_ms is not None


def test_count_tokens_is_answered_by_the_models_server(claude: anthropic.Anthropic, chat_model: str) -> None:
    counted = claude.messages.count_tokens(model=chat_model, messages=HELLO)

    assert counted.input_tokens > 0


def test_a_wrong_key_is_the_sdks_authentication_error_in_anthropics_shape(live_gateway: str, chat_model: str) -> None:
    wrong = anthropic.Anthropic(base_url=live_gateway, api_key="sk-jg-00000000.nope", max_retries=0)

    with pytest.raises(anthropic.AuthenticationError) as refused:
        wrong.messages.create(model=chat_model, max_tokens=8, messages=HELLO)

    assert refused.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid or missing API key."},
    }


def test_bearer_tokens_work_too_and_bad_requests_get_anthropics_400(
    live_gateway: str, api_key: str, chat_model: str
) -> None:
    missing = post(live_gateway, api_key, "/v1/messages", {"model": chat_model, "messages": HELLO})  # no max_tokens
    unknown = httpx.post(
        f"{live_gateway}/v1/messages", json={"model": "nope", "max_tokens": 8, "messages": HELLO},
        headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"}, timeout=30,
    )  # fmt: skip

    assert missing.status_code == 400
    assert (
        missing.json()["error"]["type"] == "invalid_request_error"
        and "max_tokens" in missing.json()["error"]["message"]
    )
    assert (unknown.status_code, unknown.json()["error"]["type"]) == (404, "not_found_error")
