"""While Redis is unreachable the sampler's live metrics pause, once said, and the sampler carries on (its samples
are stored); once Redis is back, samples are published again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from gateway.outage import RETRY_EVERY
from monitor.collectors.llama import LlamaCollector
from monitor.sampler import Sampler
from tests.redis_server import PrivateRedis, channel_layer_at


@pytest.mark.django_db(transaction=True)
async def test_live_metrics_pause_while_redis_is_down_and_resume_when_it_is_back(
    settings: Any, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture, thread_connections_closed: None
) -> None:
    settings.CHANNEL_LAYERS = channel_layer_at(private_redis.url)
    sampler = Sampler("pub-node", [], LlamaCollector(timeout=1), backends=list)
    try:
        sample = await sync_to_async(sampler.store)({})
        private_redis.stop()
        with caplog.at_level(logging.WARNING, logger="monitor.sampler"):
            for _ in range(3):
                await sampler.publish(sample)  # must not raise: the sampler's loop goes on
        assert len([r for r in caplog.records if "Redis unreachable" in r.getMessage()]) == 1

        private_redis.start()
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("metrics", channel)
        await asyncio.sleep(RETRY_EVERY)
        await sampler.publish(sample)
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
        assert message["sample"]["node"] == "pub-node"
        await layer.group_discard("metrics", channel)
    finally:
        await sampler.aclose()
