"""Each written row is published to the "requestlog" channel-layer group, for the dashboard's live tail."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from gateway import requestlog
from gateway.requestlog.tests.helpers import reset_writer


@pytest.fixture
def writer() -> object:
    reset_writer()
    yield requestlog
    reset_writer()


@pytest.mark.django_db(transaction=True)
async def test_it_publishes_written_rows_to_the_group(writer: object) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(requestlog.GROUP, channel)
    try:
        record = requestlog.RequestRecord(endpoint="/v1/embeddings", model_used="embed", error_message="x")
        record.finish(200)
        requestlog.submit(record)  # from the event loop, as the API views do
        assert await asyncio.to_thread(requestlog.flush, 5)
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    finally:
        await layer.group_discard(requestlog.GROUP, channel)
    assert message["type"] == "log.entry"
    entry = message["entry"]
    assert entry["request_id"] == record.request_id
    assert entry["endpoint"] == "/v1/embeddings"
    assert entry["model_used"] == "embed"
    assert entry["created"].endswith("Z")


@pytest.mark.django_db(transaction=True)
def test_it_publishes_from_sync_callers_too(writer: object) -> None:
    from asgiref.sync import async_to_sync

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(requestlog.GROUP, channel)
    record = requestlog.RequestRecord(endpoint="/v1/models", method="GET")
    record.finish(401)
    requestlog.submit(record)
    assert requestlog.flush(5)

    async def receive() -> dict:
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    message = async_to_sync(receive)()
    async_to_sync(layer.group_discard)(requestlog.GROUP, channel)
    assert message["entry"]["status"] == 401
