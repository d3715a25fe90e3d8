"""Every error leaves in OpenAI's shape with the right status, and names the bad field."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from gateway.models import APIKey, LLMModel
from gateway.tests.conftest import post

CHAT = "/v1/chat/completions"


def assert_openai_error(response: httpx.Response, status: int, type: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def hi(model: str, **extra: object) -> dict:
    return {**{"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}, **extra}


def test_it_refuses_a_missing_key(live_gateway: str, chat_model: str) -> None:
    response = httpx.post(f"{live_gateway}{CHAT}", json=hi(chat_model))
    assert_openai_error(response, 401, "authentication_error")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_it_refuses_an_unknown_key(live_gateway: str, chat_model: str, api_key: str) -> None:
    forged = api_key[:-4] + "AAAA"
    assert_openai_error(post(live_gateway, forged, CHAT, hi(chat_model)), 401, "authentication_error")


def test_it_refuses_a_revoked_key(live_gateway: str, chat_model: str, api_key: str) -> None:
    APIKey.objects.update(revoked=True)
    error = assert_openai_error(post(live_gateway, api_key, CHAT, hi(chat_model)), 401, "authentication_error")
    assert "revoked" in error["message"]


def test_it_refuses_an_expired_key(live_gateway: str, chat_model: str, api_key: str) -> None:
    APIKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    error = assert_openai_error(post(live_gateway, api_key, CHAT, hi(chat_model)), 401, "authentication_error")
    assert "expired" in error["message"]


def test_it_refuses_a_model_the_key_may_not_use(live_gateway: str, chat_model: str, embedding_model: str) -> None:
    key, plaintext = APIKey.objects.create_key(name="embeddings only")
    key.allowed_models.set(LLMModel.objects.filter(model_id=embedding_model))
    assert_openai_error(post(live_gateway, plaintext, CHAT, hi(chat_model)), 403, "permission_error", "model")


def test_it_answers_404_for_an_unknown_model(live_gateway: str, api_key: str) -> None:
    assert_openai_error(post(live_gateway, api_key, CHAT, hi("nope")), 404, "not_found_error", "model")


def test_it_answers_404_for_a_disabled_model(live_gateway: str, api_key: str, chat_model: str) -> None:
    LLMModel.objects.update(enabled=False)
    assert_openai_error(post(live_gateway, api_key, CHAT, hi(chat_model)), 404, "not_found_error", "model")


def test_it_refuses_malformed_json(live_gateway: str, api_key: str, chat_model: str) -> None:
    error = assert_openai_error(post(live_gateway, api_key, CHAT, b'{"model": "x",'), 400, "invalid_request_error")
    assert "JSON" in error["message"]


def test_it_refuses_a_body_that_is_not_an_object(live_gateway: str, api_key: str, chat_model: str) -> None:
    assert_openai_error(post(live_gateway, api_key, CHAT, [1, 2]), 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream": "yes please"}, "stream"),
        ({"n": 0}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content"),
        ({"model": 7}, "model"),
        ({"model": ""}, "model"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"stream": 1}, "stream"),
    ],
)
def test_it_names_the_bad_field(live_gateway: str, api_key: str, chat_model: str, extra: dict, param: str) -> None:
    assert_openai_error(
        post(live_gateway, api_key, CHAT, {**hi(chat_model), **extra}), 400, "invalid_request_error", param
    )


def test_it_refuses_a_body_over_the_limit_with_413(live_gateway: str, api_key: str, chat_model: str) -> None:
    body = hi(chat_model, messages=[{"role": "user", "content": "x" * (2**20 + 1)}])
    assert_openai_error(post(live_gateway, api_key, CHAT, body), 413, "invalid_request_error")


def test_it_refuses_get_on_a_post_endpoint(live_gateway: str, api_key: str) -> None:
    response = httpx.get(f"{live_gateway}{CHAT}", headers={"Authorization": f"Bearer {api_key}"})
    assert_openai_error(response, 405, "invalid_request_error")


def test_it_refuses_unknown_fields_for_embeddings(live_gateway: str, api_key: str, embedding_model: str) -> None:
    body = {"model": embedding_model, "input": "x", "pooling_magic": True}
    assert_openai_error(
        post(live_gateway, api_key, "/v1/embeddings", body), 400, "invalid_request_error", "pooling_magic"
    )


def test_it_refuses_tools_on_a_gateway_side_template(live_gateway: str, api_key: str, template_model: str) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    response = post(live_gateway, api_key, CHAT, hi(template_model, tools=tools))
    assert_openai_error(response, 400, "invalid_request_error", "tools")


def test_it_passes_the_backends_4xx_on_with_its_message(live_gateway: str, api_key: str, llama_chat: object) -> None:
    # A real context overflow: a prompt longer than the real server's context window.
    from gateway.registry import register_model

    register_model("tiny-context", [llama_chat.url], kind="chat")  # type: ignore[attr-defined]
    body = hi("tiny-context", messages=[{"role": "user", "content": "word " * 5000}])
    error = assert_openai_error(post(live_gateway, api_key, CHAT, body), 400, "exceed_context_size_error")
    assert "context" in error["message"]


def test_an_empty_list_of_prompts_names_the_prompt(live_gateway: str, api_key: str, chat_model: str) -> None:
    body = {"model": chat_model, "prompt": [], "max_tokens": 2}
    assert_openai_error(post(live_gateway, api_key, "/v1/completions", body), 400, "invalid_request_error", "prompt")
