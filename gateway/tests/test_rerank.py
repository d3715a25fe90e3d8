"""POST /v1/rerank: llama-server's ranking of documents against a query, relayed in its own shape under the model's
public name, counted against the key's limits by its tokens, and logged once.

A real llama-server started with --rerank answers (the small model is no reranker: its scores mean nothing, but the
answer is llama-server's own); a fake backend shows that a build naming its GGUF in the answer is renamed.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.models import APIKey
from gateway.registry import register_model
from gateway.tests.conftest import post
from gateway.tests.test_request_logging import row_for
from tests.answers import answer_schema, conforms
from tests.fake_llama import GGUF, FakeLlama

RERANK = "/v1/rerank"
DOCUMENTS = ["hi", "it is a bear", "The giant panda is a bear species endemic to China."]


@pytest.fixture
def reranker(transactional_db: None, llama_rerank: Any) -> str:
    register_model("reranker", [llama_rerank.url], kind="rerank", aliases=["bge-reranker"])
    return "reranker"


def rank(live_gateway: str, key: str, model: str, **fields: object) -> Any:
    return post(live_gateway, key, RERANK, {"model": model, "query": "What is a panda?", "documents": DOCUMENTS,
                                            **fields})  # fmt: skip


def test_it_answers_llama_servers_ranking_most_relevant_first(live_gateway: str, api_key: str, reranker: str) -> None:
    response = rank(live_gateway, api_key, reranker, top_n=2)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert conforms(answer, answer_schema(RERANK, "post")), "the OpenAPI document says otherwise"
    results = answer["results"]
    assert len(results) == 2  # top_n
    assert {result["index"] for result in results} <= {0, 1, 2}
    scores = [result["relevance_score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert answer["usage"]["prompt_tokens"] > 0


def test_it_names_the_model_as_the_client_did(live_gateway: str, api_key: str, reranker: str) -> None:
    assert rank(live_gateway, api_key, "bge-reranker").json()["model"] == "bge-reranker"


def test_a_backend_naming_its_gguf_is_renamed(live_gateway: str, api_key: str, fake_llama: FakeLlama) -> None:
    register_model("ranked", [fake_llama.url], kind="rerank")

    answer = rank(live_gateway, api_key, "ranked").json()

    assert answer["model"] == "ranked" and GGUF not in str(answer)
    assert [result["index"] for result in answer["results"]] == [2, 1, 0]  # the fake's relevance: shared words
    assert fake_llama.received[0]["json"] == {"model": "ranked", "query": "What is a panda?", "documents": DOCUMENTS}


def test_it_logs_one_row_with_its_tokens(live_gateway: str, api_key: str, reranker: str, llama_rerank: Any) -> None:
    response = rank(live_gateway, api_key, reranker)

    row = row_for(response)
    assert (row.status, row.endpoint, row.method) == (200, RERANK, "POST")
    assert (row.model_requested, row.model_used, row.backend) == (reranker, reranker, llama_rerank.url)
    assert row.prompt_tokens == response.json()["usage"]["prompt_tokens"] > 0
    assert row.latency_ms > 0 and row.ttft_ms is not None


def test_its_tokens_count_against_the_keys_limit(live_gateway: str, reranker: str) -> None:
    _, key = APIKey.objects.create_key(name="few tokens", tokens_per_minute=5)

    assert rank(live_gateway, key, reranker).status_code == 200  # more than 5 prompt tokens
    refused = rank(live_gateway, key, reranker)

    assert refused.status_code == 429
    assert "tokens per minute" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"documents": []}, "documents"),
        ({"documents": "a bear"}, "documents"),
        ({"documents": ["a bear", 7]}, "documents[1]"),
        ({"query": ""}, "query"),
        ({"top_n": 0}, "top_n"),
        ({"return_documents": True}, "return_documents"),
    ],
)
def test_it_refuses_a_malformed_request_naming_the_field(
    live_gateway: str, api_key: str, fake_llama: FakeLlama, transactional_db: None, fields: dict, param: str
) -> None:
    register_model("ranked", [fake_llama.url], kind="rerank")

    response = rank(live_gateway, api_key, "ranked", **fields)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert fake_llama.received == []
