"""Each stored sample goes to the channel group "metrics" in the shape GET /system/stats returns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client

from gateway.models import Backend, LLMModel
from monitor.collectors.linux import LinuxCollector
from monitor.collectors.llama import LlamaCollector
from monitor.sampler import Sampler, enabled_backends
from tests.llama_server import LlamaServer


def _staff_get(path: str) -> dict:
    client = Client()
    client.force_login(User.objects.create_user("watcher", is_staff=True))
    return client.get(path).json()


def _add_backend(url: str) -> None:
    model = LLMModel.objects.create(model_id="gemma-3-270m")
    Backend.objects.create(model=model, base_url=url)
    Backend.objects.create(model=model, base_url="http://127.0.0.1:1", enabled=False)


@pytest.mark.django_db(transaction=True)
async def test_it_publishes_what_system_stats_returns(
    tmp_path: Path, llama_chat: LlamaServer, thread_connections_closed: None
) -> None:
    await sync_to_async(_add_backend)(llama_chat.url)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("metrics", channel)
    sampler = Sampler("pub-node", [LinuxCollector(["/"], tmp_path)], LlamaCollector(timeout=5), enabled_backends)
    try:
        await sampler.step()
        # A guard against hanging forever if nothing is published, not a timing assertion.
        message = await asyncio.wait_for(layer.receive(channel), timeout=30)
    finally:
        await sampler.aclose()
        await layer.group_discard("metrics", channel)

    assert message["type"] == "metrics.sample"
    published = json.loads(json.dumps(message["sample"]))
    assert published["node"] == "pub-node" and published["time"]
    assert published == await sync_to_async(_staff_get)("/system/stats?node=pub-node")
    # Only the enabled backend is polled, and its slots reach the headline figure.
    assert [backend["url"] for backend in published["backends"]] == [llama_chat.url]
    assert published["summary"]["slots_busy"] == 0
