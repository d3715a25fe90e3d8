"""The request-log websocket relays each newly written row to signed-in dashboard users only."""

from __future__ import annotations

import pytest
from channels.layers import get_channel_layer

from dashboard.tests.conftest import connect, next_matching

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_pushes_each_new_entry(alice) -> None:
    communicator = await connect("/ws/logs/", alice)
    connected, _ = await communicator.connect()
    assert connected
    entry = {"id": 7, "endpoint": "/v1/chat/completions", "status": 200, "model_requested": "<script>x</script>"}
    await get_channel_layer().group_send("requestlog", {"type": "log.entry", "entry": entry})
    assert await next_matching(communicator, lambda m: m["entry"]["id"] == 7) == {"type": "entry", "entry": entry}
    await communicator.disconnect()


async def test_it_refuses_users_without_access(bob) -> None:
    communicator = await connect("/ws/logs/", bob)
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403


async def test_it_refuses_anonymous_visitors(db) -> None:
    communicator = await connect("/ws/logs/", None)
    connected, _ = await communicator.connect()
    assert not connected
