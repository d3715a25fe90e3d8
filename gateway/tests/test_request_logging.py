"""Every API request, whatever its outcome, becomes one RequestLog row written by the live server."""

from __future__ import annotations

import httpx
import pytest

from gateway.models import APIKey, RequestLog
from gateway.tests.conftest import post
from tests.live import logged_row

CHAT = "/v1/chat/completions"


def row_for(response: httpx.Response, limit: float = 15) -> RequestLog:
    """The row of a response, once the server's writer has flushed it."""
    return logged_row(response.headers["X-Request-Id"], limit)


def test_a_successful_chat_is_recorded_with_tokens_and_timings(
    live_gateway: str, api_key: str, chat_model: str, llama_chat: object
) -> None:
    body = {"model": chat_model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    response = post(live_gateway, api_key, CHAT, body, headers={"User-Agent": "pytest-agent"})
    row = row_for(response)
    key = APIKey.objects.get()
    assert (row.status, row.endpoint, row.method) == (200, CHAT, "POST")
    assert (row.api_key_id, row.key_name) == (key.pk, key.name)
    assert (row.model_requested, row.model_used) == (chat_model, chat_model)
    assert row.backend == llama_chat.url  # type: ignore[attr-defined]
    assert row.prompt_tokens == response.json()["usage"]["prompt_tokens"]
    assert row.completion_tokens == 3
    assert row.latency_ms > 0 and row.ttft_ms is not None
    assert row.tokens_per_second and row.tokens_per_second > 0
    assert row.client_ip == "127.0.0.1"
    assert row.user_agent == "pytest-agent"
    assert not row.stream and not row.client_gone
    assert row.prompt_preview == "" and row.completion_preview == ""  # previews are off by default


def test_a_stream_is_recorded_with_its_time_to_first_token(live_gateway: str, api_key: str, chat_model: str) -> None:
    body = {"model": chat_model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}
    row = row_for(post(live_gateway, api_key, CHAT, body))
    assert row.stream and row.status == 200
    assert row.completion_tokens == 3  # counted even though the client did not ask for usage
    assert 0 < row.ttft_ms <= row.latency_ms


@pytest.mark.parametrize(("authorization", "status"), [("", 401), ("Bearer sk-jg-deadbeef.not-a-real-secret", 401)])
def test_an_authentication_failure_is_recorded_without_the_key(
    live_gateway: str, transactional_db: None, authorization: str, status: int
) -> None:
    response = httpx.post(f"{live_gateway}{CHAT}", json={"model": "x"}, headers={"Authorization": authorization})
    row = row_for(response)
    assert row.status == status
    assert row.error_type == "authentication_error"
    assert row.api_key_id is None
    stored = " ".join(str(v) for v in RequestLog.objects.filter(pk=row.pk).values().get().values())
    assert "not-a-real-secret" not in stored


def test_validation_and_rate_limit_errors_are_recorded(live_gateway: str, chat_model: str) -> None:
    _, key = APIKey.objects.create_key(name="one a minute", requests_per_minute=1)
    bad = post(live_gateway, key, CHAT, {"model": chat_model, "messages": "nope"})
    assert row_for(bad).error_type == "invalid_request_error"
    ok = post(
        live_gateway, key, CHAT, {"model": chat_model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    )
    limited = post(
        live_gateway, key, CHAT, {"model": chat_model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    )
    assert ok.status_code == 200
    assert limited.status_code == 429
    assert row_for(limited).status == 429
    assert row_for(limited).error_type == "rate_limit_error"


def test_a_client_that_went_away_is_recorded(live_gateway: str, api_key: str, chat_model: str) -> None:
    body = {"model": chat_model, "messages": [{"role": "user", "content": "Story"}], "max_tokens": 500, "ignore_eos": True,
            "stream": True}  # fmt: skip
    with httpx.stream(
        "POST", f"{live_gateway}{CHAT}", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    ) as response:
        next(response.iter_lines())
    row = row_for(response)
    assert row.client_gone
    assert row.status == 499


def test_health_probes_are_not_recorded(live_gateway: str, api_key: str, chat_model: str) -> None:
    before = RequestLog.objects.count()
    for path in ("/livez", "/readyz", "/health"):
        httpx.get(f"{live_gateway}{path}", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    marker = post(live_gateway, api_key, "/v1/embeddings", {"model": "nope", "input": "x"})
    row_for(marker)  # once this one is written, anything sent before it would be too
    assert RequestLog.objects.count() == before + 1


def test_previews_are_stored_when_the_key_asks_for_them(live_gateway: str, chat_model: str) -> None:
    _, key = APIKey.objects.create_key(name="previews", store_previews=True)
    body = {"model": chat_model, "messages": [{"role": "user", "content": "Remember this prompt"}], "max_tokens": 3}
    response = post(live_gateway, key, CHAT, body)
    row = row_for(response)
    assert row.prompt_preview == "Remember this prompt"
    assert row.completion_preview == response.json()["choices"][0]["message"]["content"]


def test_keys_never_reach_the_servers_log_lines(live_gateway: str, api_key: str, chat_model: str) -> None:
    from tests.live import ARTIFACTS

    forged = api_key[:-6] + "ZZZZZZ"
    row_for(post(live_gateway, api_key, CHAT, {"model": chat_model, "messages": []}))
    row_for(post(live_gateway, forged, CHAT, {"model": chat_model}))
    log_text = (ARTIFACTS / f"daphne-{live_gateway.rsplit(':', 1)[1]}.log").read_text()
    assert "POST /v1/chat/completions" in log_text  # this is the right server's log
    for secret in (api_key, api_key.split(".", 1)[1], forged.split(".", 1)[1]):
        assert secret not in log_text


def test_a_failure_mid_stream_is_recorded_as_an_error_not_as_a_client_gone(
    live_gateway: str, api_key: str, fake_llama: object
) -> None:
    from gateway.registry import register_model

    fake_llama.behaviour = "midstream_error"  # type: ignore[attr-defined]
    register_model("faked", [fake_llama.url], kind="chat")  # type: ignore[attr-defined]
    body = {"model": "faked", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    row = row_for(post(live_gateway, api_key, CHAT, body))
    assert row.status == 502
    assert row.error_type == "server_error"
    assert not row.client_gone
