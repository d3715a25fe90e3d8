"""What a model serves decides which endpoints take it: its kind (chat, vision, embedding, rerank) and whether it
accepts audio. Any other endpoint answers 400 naming the model's kind and what it serves; /v1/models shows both."""

from __future__ import annotations

import httpx
import pytest

from gateway.registry import register_model
from monitor.operations import openapi
from tests.answers import conforms

CHAT_BODY = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
BODIES = {
    "/v1/chat/completions": CHAT_BODY,
    "/v1/completions": {"prompt": "Hi", "max_tokens": 1},
    "/v1/embeddings": {"input": "Hi"},
    "/v1/rerank": {"query": "Hi", "documents": ["Hello"]},
}
GENERATION = "/v1/chat/completions, /v1/completions, /v1/responses, /v1/messages"
MODELS = {
    "chatty": ({"kind": "chat"}, f"(chat) serves {GENERATION}, not"),
    "hearing": (
        {"kind": "chat", "audio": True},
        f"(chat, accepts audio) serves {GENERATION}, /v1/audio/transcriptions",
    ),
    "seeing": ({"kind": "vision"}, f"(vision) serves {GENERATION}, not"),
    "seeing-and-hearing": ({"kind": "vision", "audio": True}, f"(vision, accepts audio) serves {GENERATION}, /v1/"),
    "embedder": ({"kind": "embedding"}, "(embedding) serves /v1/embeddings, not"),
    "ranker": ({"kind": "rerank"}, "(rerank) serves /v1/rerank, not"),
}


@pytest.fixture
def models(transactional_db: None) -> None:
    # No backend: a request the model serves gets as far as looking for one (503); one it does not serve, 400 before.
    for model_id, (fields, _) in MODELS.items():
        register_model(model_id, [], **fields)


async def ask(app_client: httpx.AsyncClient, endpoint: str, model: str) -> httpx.Response:
    if endpoint == "/v1/audio/transcriptions":
        return await app_client.post(endpoint, data={"model": model}, files={"file": ("a.wav", b"RIFF", "audio/wav")})
    return await app_client.post(endpoint, json={"model": model, **BODIES[endpoint]})


@pytest.mark.parametrize(
    ("model", "endpoint"),
    [
        ("ranker", "/v1/chat/completions"),
        ("ranker", "/v1/embeddings"),
        ("embedder", "/v1/rerank"),
        ("embedder", "/v1/completions"),
        ("chatty", "/v1/rerank"),
        ("chatty", "/v1/embeddings"),
        ("chatty", "/v1/audio/transcriptions"),
        ("seeing", "/v1/audio/transcriptions"),
        ("hearing", "/v1/embeddings"),
    ],
)
async def test_it_refuses_an_endpoint_the_model_does_not_serve_saying_what_it_serves(
    app_client: httpx.AsyncClient, models: None, model: str, endpoint: str
) -> None:
    response = await ask(app_client, endpoint, model)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")
    assert f"The model `{model}` {MODELS[model][1]}" in error["message"]
    assert error["message"].endswith(f"not {endpoint}")


@pytest.mark.parametrize(
    ("model", "endpoint"),
    [
        ("chatty", "/v1/chat/completions"),
        ("seeing", "/v1/completions"),
        ("hearing", "/v1/audio/transcriptions"),
        ("embedder", "/v1/embeddings"),
        ("ranker", "/v1/rerank"),
    ],
)
async def test_it_takes_a_model_on_the_endpoints_it_serves(
    app_client: httpx.AsyncClient, models: None, model: str, endpoint: str
) -> None:
    response = await ask(app_client, endpoint, model)

    assert response.status_code == 503, response.text  # routed: no backend to answer
    assert response.json()["error"]["code"] == "backend_unavailable"


async def test_the_model_list_shows_each_ones_kind_and_capabilities(
    app_client: httpx.AsyncClient, models: None
) -> None:
    response = await app_client.get("/v1/models")

    listed = {model["id"]: (model["kind"], model["capabilities"]) for model in response.json()["data"]}
    assert listed == {
        "chatty": ("chat", []),
        "hearing": ("chat", ["audio"]),
        "seeing": ("vision", ["vision"]),
        "seeing-and-hearing": ("vision", ["vision", "audio"]),
        "embedder": ("embedding", []),
        "ranker": ("rerank", []),
    }
    one = (await app_client.get("/v1/models/hearing")).json()
    assert (one["kind"], one["capabilities"]) == ("chat", ["audio"])
    assert conforms(one, openapi.MODEL_SCHEMA), "the OpenAPI document says otherwise"
