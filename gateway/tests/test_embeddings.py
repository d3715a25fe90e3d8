"""Embeddings through the SDK against the real embeddings server: strings, lists, token arrays, float and base64."""

from __future__ import annotations

import base64
import struct

import httpx
import openai


def test_it_embeds_a_string_with_the_models_dimension(client: openai.OpenAI, embedding_model: str) -> None:
    response = client.embeddings.create(model=embedding_model, input="hello world", encoding_format="float")
    assert response.model == embedding_model
    assert len(response.data) == 1
    assert len(response.data[0].embedding) == 640
    assert response.usage.prompt_tokens > 0


def test_it_embeds_a_list_in_order(client: openai.OpenAI, embedding_model: str) -> None:
    response = client.embeddings.create(
        model=embedding_model, input=["cat", "a long sentence about dogs"], encoding_format="float"
    )
    assert [item.index for item in response.data] == [0, 1]
    assert response.data[0].embedding != response.data[1].embedding


def test_it_accepts_token_arrays(client: openai.OpenAI, embedding_model: str) -> None:
    response = client.embeddings.create(model=embedding_model, input=[[2, 9259, 1902]], encoding_format="float")
    assert len(response.data[0].embedding) == 640


def test_base64_decodes_to_the_same_vector_as_float(live_gateway: str, api_key: str, embedding_model: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{live_gateway}/v1/embeddings"
    as_float = httpx.post(
        url, headers=headers, json={"model": embedding_model, "input": "same text"}, timeout=60
    ).json()
    as_b64 = httpx.post(
        url,
        headers=headers,
        json={"model": embedding_model, "input": "same text", "encoding_format": "base64"},
        timeout=60,
    ).json()
    raw = base64.b64decode(as_b64["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    expected = as_float["data"][0]["embedding"]
    assert len(decoded) == len(expected) == 640
    assert max(abs(a - b) for a, b in zip(decoded, expected, strict=True)) < 1e-6


def test_the_sdk_default_base64_path_works(client: openai.OpenAI, embedding_model: str) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    response = client.embeddings.create(model=embedding_model, input="hello")
    assert len(response.data[0].embedding) == 640


def test_it_refuses_a_chat_model(client: openai.OpenAI, chat_model: str) -> None:
    try:
        client.embeddings.create(model=chat_model, input="hello")
    except openai.BadRequestError as exc:
        assert exc.body["param"] == "model"
    else:
        raise AssertionError("a chat model was accepted for embeddings")
