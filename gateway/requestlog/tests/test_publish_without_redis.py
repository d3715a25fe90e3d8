"""While Redis is silent the request log's live tail pauses, once said, and the rows are written all the same
without waiting for Redis batch after batch; once Redis is back, written rows are published again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from gateway import requestlog
from gateway.models import RequestLog
from gateway.outage import RETRY_EVERY, RedisOutage
from gateway.requestlog import writer
from gateway.requestlog.tests.helpers import reset_writer
from tests.redis_server import PrivateRedis, channel_layer_at


@pytest.fixture
def fresh_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    reset_writer()
    tail = writer._writer.live_tail
    monkeypatch.setattr(writer._writer, "live_tail", RedisOutage(tail.name, tail.meanwhile, tail.logger))
    yield
    reset_writer()


def submit(request_id: str) -> None:
    record = requestlog.RequestRecord(endpoint="/v1/models", method="GET", request_id=request_id)
    record.finish(200)
    requestlog.submit(record)


@pytest.mark.django_db(transaction=True)
def test_rows_are_written_while_redis_is_silent_and_published_once_it_is_back(
    settings: Any, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture, fresh_writer: None
) -> None:
    settings.CHANNEL_LAYERS = channel_layer_at(private_redis.url)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(requestlog.GROUP, channel)
    private_redis.pause()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.requestlog"):
            for n in range(3):
                submit(f"silent-{n}")
                assert requestlog.flush(timeout=3), "a batch waited for the silent Redis"
    finally:
        private_redis.resume()
    assert RequestLog.objects.filter(request_id__startswith="silent-").count() == 3
    assert len([r for r in caplog.records if "Redis unreachable" in r.getMessage()]) == 1

    time.sleep(RETRY_EVERY)
    submit("back")
    assert requestlog.flush(timeout=5)

    async def entry_of(request_id: str) -> dict:
        while True:  # a message sent while Redis was frozen may arrive first
            message = await asyncio.wait_for(layer.receive(channel), timeout=5)
            if message["entry"]["request_id"] == request_id:
                return message["entry"]

    assert async_to_sync(entry_of)("back")["status"] == 200
    async_to_sync(layer.group_discard)(requestlog.GROUP, channel)
