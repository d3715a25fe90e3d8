"""GET /metrics counts prompt caches as requests finish (by where the prompt's start came from, the tokens served
from a cache, and the reading time and tokens that price them), and shows each managed model's saved caches."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.utils import timezone

from gateway import metrics
from gateway.models import Backend, ManagedRuntime, Supervisor
from gateway.registry import register_model
from gateway.requestlog.record import RequestRecord
from tests.scrape import parse, value

TOKEN = "scrape-token-456"


def scrape() -> dict:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return parse(response.content.decode())


@pytest.fixture(autouse=True)
def token(settings: object) -> None:
    settings.MONITOR_METRICS_TOKEN = TOKEN  # type: ignore[attr-defined]


def test_it_counts_requests_by_cache_source_and_the_tokens_cached(db: None) -> None:
    model = f"qwen-{uuid.uuid4().hex[:8]}"  # the counters live as long as the test run: a model of its own
    for source, prompt, cached, ms in (("restored", 1000, 900, 50.0), ("live", 500, 400, 50.0),
                                       ("none", 300, 0, 150.0), ("live", 80, 60, None), ("", 50, None, None)):  # fmt: skip
        metrics.observe(RequestRecord(endpoint="/v1/chat/completions", model_used=model, status=200,
                                      prompt_cache=source, prompt_tokens=prompt, cached_tokens=cached, prompt_ms=ms))  # fmt: skip
    samples = scrape()
    by_source = {s: value(samples, "jetson_gateway_prompt_cache_requests_total", model=model, source=s)
                 for s in ("restored", "live", "none", "")}  # fmt: skip
    assert by_source == {"restored": 1, "live": 2, "none": 1, "": 0}  # a backend that said nothing: no series
    assert value(samples, "jetson_gateway_cached_prompt_tokens_total", model=model) == 900 + 400 + 60
    # Only the requests that said their reading time: 500 tokens read in 0.25 s.
    assert value(samples, "jetson_gateway_prompt_read_seconds_total", model=model) == pytest.approx(0.25)
    assert value(samples, "jetson_gateway_prompt_read_tokens_total", model=model) == 500


def test_it_shows_each_managed_models_saved_caches(db: None) -> None:
    register_model("gemma", [], managed={"gguf_path": "/models/gemma.gguf", "node": "orin-1"})
    Supervisor.objects.create(node="orin-1", host="127.0.0.1", port=0, heartbeat=timezone.now())
    backend = Backend.objects.get(model__model_id="gemma")
    ManagedRuntime.objects.create(backend=backend, state="ready", saved_caches=2, saved_cache_bytes=3 * 2**20)
    samples = scrape()
    assert value(samples, "jetson_model_saved_caches", node="orin-1", model="gemma") == 2
    assert value(samples, "jetson_model_saved_cache_bytes", node="orin-1", model="gemma") == 3 * 2**20
