"""The session fixtures reach a real llama-server with the real small model."""

from __future__ import annotations

import httpx


def test_it_generates_tokens_with_the_chat_server(llama_chat) -> None:
    response = httpx.post(
        f"{llama_chat.url}/completion",
        json={"prompt": "The capital of France is", "n_predict": 8, "temperature": 0},
        timeout=60,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["tokens_predicted"] > 0
    assert body["content"]
    assert body["model"] or body["generation_settings"]


def test_it_returns_a_vector_of_the_models_dimension(llama_embed) -> None:
    response = httpx.post(f"{llama_embed.url}/v1/embeddings", json={"input": "hello"}, timeout=60)
    assert response.status_code == 200
    vector = response.json()["data"][0]["embedding"]
    assert len(vector) == 640  # Gemma 3 270M's hidden size
    assert any(value != 0 for value in vector)
