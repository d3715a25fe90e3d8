"""A backend is probed one way: the sampler, /health and the dashboard's Models page read the same verdict and
llama-server's own message from a backend that is still loading its model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async

from dashboard.status import models_status
from gateway.llama import free_port
from gateway.registry import register_model
from gateway.upstream import Target
from monitor.collectors.llama import LlamaCollector, PolledBackend
from monitor.operations.health import report
from tests.fake_llama import FakeLlama

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loading_backend() -> Iterator[FakeLlama]:
    fake = FakeLlama(free_port(), behaviour="loading").start_in_thread()
    yield fake
    fake.stop()


async def test_a_loading_backend_is_the_same_to_the_sampler_health_and_the_dashboard(
    loading_backend: FakeLlama, thread_connections_closed: None
) -> None:
    await sync_to_async(register_model)("loading-model", [loading_backend.url], kind="chat")
    collector = LlamaCollector(timeout=5)
    try:
        sample = await collector.collect([PolledBackend(Target(loading_backend.url), "loading-model")])
        health = {model["id"]: model for model in (await report())["models"]}
        shown = {model["model_id"]: model for model in await models_status()}
    finally:
        await collector.aclose()
    [sampled] = sample["backends"]
    [reported] = health["loading-model"]["backends"]
    [listed] = shown["loading-model"]["backends"]
    assert (sampled["ok"], sampled["error"]) == (False, "Loading model")
    assert (reported["status"], reported["error"]) == ("loading", "Loading model")
    assert (listed["up"], listed["error"]) == (False, "Loading model")
