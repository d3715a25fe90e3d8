"""The Models page's status: each backend probed for up/down, latency and slots, without leaking backend keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.test import AsyncClient

from gateway import upstream
from gateway.llama import free_port
from gateway.models import Backend
from gateway.registry import register_model

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_backend_sessions() -> AsyncIterator[None]:
    yield
    await upstream.close_sessions()


async def status_of(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/models/status")
    assert response.status_code == 200
    return {m["model_id"]: m for m in response.json()["models"]}


@pytest.fixture
def registry(llama_chat: Any, transactional_db: None) -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    register_model("live-model", [llama_chat.url], kind="chat")
    register_model("dead-model", [dead], kind="vision")
    off, _ = register_model("switched-off", [llama_chat.url], kind="chat")
    Backend.objects.filter(model=off).update(enabled=False, api_key="backend-secret")
    return {"live": llama_chat.url, "dead": dead}


async def test_it_reports_an_up_backend_with_its_slots(alice, registry) -> None:
    client = AsyncClient()
    await client.aforce_login(alice)
    [backend] = (await status_of(client))["live-model"]["backends"]
    assert backend["url"] == registry["live"]
    assert backend["up"] is True
    assert backend["latency_ms"] >= 0
    assert backend["slots_busy"] + backend["slots_idle"] == 2  # the fixture's --parallel 2
    assert backend["in_flight"] == 0


async def test_it_says_whether_each_backends_gguf_has_a_chat_template(alice, registry) -> None:
    client = AsyncClient()
    await client.aforce_login(alice)
    status = await status_of(client)
    assert status["live-model"]["prompt_format"] == "server"
    [live] = status["live-model"]["backends"]
    assert live["chat_template"] is False  # the bundled base model; its GGUF is read here, named by /props
    assert "no tokenizer.chat_template" in live["chat_template_detail"]
    [dead] = status["dead-model"]["backends"]
    assert dead["chat_template"] is None
    assert dead["chat_template_detail"] == "backend unreachable"


async def test_it_reports_an_unreachable_backend_as_down(alice, registry) -> None:
    client = AsyncClient()
    await client.aforce_login(alice)
    model = (await status_of(client))["dead-model"]
    assert model["kind"] == "vision"
    [backend] = model["backends"]
    assert backend["up"] is False
    assert "cannot reach" in backend["error"]


async def test_it_lists_disabled_backends_without_probing_or_showing_their_key(alice, registry) -> None:
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.get("/models/status")
    assert b"backend-secret" not in response.content
    [backend] = {m["model_id"]: m for m in response.json()["models"]}["switched-off"]["backends"]
    assert backend["enabled"] is False
    assert backend["up"] is False
    assert backend["latency_ms"] is None
