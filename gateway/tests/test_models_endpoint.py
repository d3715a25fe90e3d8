"""GET /v1/models and /v1/models/{id}: only what the key may use."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.models import APIKey, LLMModel


def test_it_lists_every_enabled_model(client: openai.OpenAI, chat_model: str, embedding_model: str) -> None:
    LLMModel.objects.create(model_id="switched-off", enabled=False)
    ids = {m.id for m in client.models.list()}
    assert ids == {chat_model, embedding_model}


def test_it_lists_only_the_models_a_key_may_use(live_gateway: str, chat_model: str, embedding_model: str) -> None:
    key, plaintext = APIKey.objects.create_key(name="embeddings only")
    key.allowed_models.set(LLMModel.objects.filter(model_id=embedding_model))
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=plaintext, max_retries=0)
    assert [m.id for m in client.models.list()] == [embedding_model]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(chat_model)


def test_it_retrieves_one_model(client: openai.OpenAI, chat_model: str) -> None:
    model = client.models.retrieve(chat_model)
    assert model.id == chat_model
    assert model.object == "model"


def test_it_answers_404_for_an_unknown_model(client: openai.OpenAI, transactional_db: None) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"


def test_it_answers_404_in_its_own_shape_for_any_id(live_gateway: str, api_key: str) -> None:
    # A line break in the id: Django's `path` converter would not match it and answer with an HTML page.
    for model_id in ("line%0Abreak", "a/b", "%20"):
        response = httpx.get(f"{live_gateway}/v1/models/{model_id}", headers={"Authorization": f"Bearer {api_key}"})
        assert response.status_code == 404, model_id
        assert response.json()["error"]["code"] == "model_not_found"
        assert response.headers["X-Request-Id"]


def test_it_finds_a_model_by_alias(client: openai.OpenAI, chat_model: str) -> None:
    LLMModel.objects.filter(model_id=chat_model).update(aliases=["gpt-4o-mini"])
    assert client.models.retrieve("gpt-4o-mini").id == chat_model
