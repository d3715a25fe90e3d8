"""A backend that does not serve an endpoint gets the client a 501 `endpoint_not_supported` naming the backend and
the endpoint, on every POST endpoint: a build older than the route (it answers 404) or one not started for it
(llama-server's own 501: no --rerank, a model without audio). The backend is not taken out of rotation: it is well,
and serves the model's other endpoints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.registry import register_model
from gateway.tests.conftest import post
from gateway.tests.test_request_logging import row_for
from tests.fake_llama import FakeLlama

REQUESTS = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
    "/v1/completions": {"prompt": "Hi", "max_tokens": 2, "stream": True},
    "/v1/embeddings": {"input": "Hi"},
    "/v1/rerank": {"query": "Hi", "documents": ["Hello"]},
}
KINDS = {"/v1/embeddings": "embedding", "/v1/rerank": "rerank"}


def ask(live_gateway: str, key: str, endpoint: str, model: str) -> httpx.Response:
    if endpoint == "/v1/audio/transcriptions":
        return httpx.post(f"{live_gateway}{endpoint}", headers={"Authorization": f"Bearer {key}"},
                          data={"model": model}, files={"file": ("a.wav", b"RIFF", "audio/wav")}, timeout=60)  # fmt: skip
    return post(live_gateway, key, endpoint, {"model": model, **REQUESTS[endpoint]})


def assert_not_supported(response: httpx.Response, backend: str, endpoint: str) -> str:
    assert response.status_code == 501, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("not_supported_error", "endpoint_not_supported")
    assert f"The backend {backend} does not serve {endpoint}" in error["message"]
    row = row_for(response)
    assert (row.status, row.error_code, row.backend) == (501, "endpoint_not_supported", backend)
    return error["message"]


@pytest.mark.parametrize("endpoint", [*REQUESTS, "/v1/audio/transcriptions"])
def test_a_build_without_the_route_is_named_and_left_in_rotation(
    live_gateway: str, api_key: str, fake_llama: FakeLlama, transactional_db: None, endpoint: str
) -> None:
    register_model("old", [fake_llama.url], kind=KINDS.get(endpoint, "chat"), audio=endpoint not in KINDS)
    fake_llama.behaviour = "no_route"

    message = assert_not_supported(ask(live_gateway, api_key, endpoint, "old"), fake_llama.url, endpoint)

    assert "404" in message
    fake_llama.behaviour = "ok"  # a backend in cool-off (30 s on the live gateway) would get no request: 503
    assert ask(live_gateway, api_key, endpoint, "old").status_code == 200


def test_a_llama_server_not_started_for_reranking_says_so(
    live_gateway: str, api_key: str, llama_chat: Any, transactional_db: None
) -> None:
    register_model("not-a-reranker", [llama_chat.url], kind="rerank")

    message = assert_not_supported(ask(live_gateway, api_key, "/v1/rerank", "not-a-reranker"), llama_chat.url,
                                   "/v1/rerank")  # fmt: skip

    assert "Start it with `--reranking`" in message  # llama-server's own words


def test_a_model_without_audio_says_so(
    live_gateway: str, api_key: str, llama_chat: Any, transactional_db: None
) -> None:
    register_model("deaf", [llama_chat.url], kind="chat", audio=True)  # registered as hearing: it does not

    message = assert_not_supported(ask(live_gateway, api_key, "/v1/audio/transcriptions", "deaf"), llama_chat.url,
                                   "/v1/audio/transcriptions")  # fmt: skip

    assert "does not support audio input" in message
    assert ask(live_gateway, api_key, "/v1/chat/completions", "deaf").status_code == 200  # still in rotation
