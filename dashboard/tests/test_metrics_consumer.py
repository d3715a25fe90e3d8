"""The metrics websocket relays the sampler's group messages to signed-in dashboard users only."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from dashboard.tests.conftest import connect, next_matching

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = {"node": "orin-1", "time": "2026-11-25T10:00:00+00:00", "summary": {"cpu_percent": 37.5, "gpu_percent": 81}}


async def test_it_pushes_each_published_sample(alice) -> None:
    communicator = await connect("/ws/metrics/", alice)
    connected, _ = await communicator.connect()
    assert connected
    await get_channel_layer().group_send("metrics", {"type": "metrics.sample", "sample": SAMPLE})
    assert await next_matching(communicator, lambda m: m["sample"]["node"] == "orin-1") == {
        "type": "sample",
        "sample": SAMPLE,
    }
    await communicator.disconnect()


async def test_it_accepts_a_user_given_the_permission(carol) -> None:
    communicator = await connect("/ws/metrics/", carol)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


async def test_it_refuses_anonymous_visitors(db) -> None:
    communicator = await connect("/ws/metrics/", None)
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403


async def test_it_refuses_users_without_access(bob) -> None:
    communicator = await connect("/ws/metrics/", bob)
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403


async def test_it_refuses_a_foreign_origin(alice) -> None:
    communicator = await connect("/ws/metrics/", alice, origin="http://evil.example")
    connected, _ = await communicator.connect()
    assert not connected


async def test_it_leaves_the_group_on_disconnect(alice) -> None:
    layer = get_channel_layer()
    if not hasattr(layer, "groups"):
        pytest.skip("only the in-memory channel layer lets a test see group membership")
    communicator = await connect("/ws/metrics/", alice)
    await communicator.connect()
    assert layer.groups.get("metrics")
    await communicator.disconnect()
    assert not layer.groups.get("metrics")


async def test_it_survives_a_quiet_spell_longer_than_the_redis_pop(alice) -> None:
    layer = get_channel_layer()
    if hasattr(layer, "groups"):
        pytest.skip("the in-memory channel layer has no socket to time out")
    communicator = await connect("/ws/metrics/", alice)
    assert (await communicator.connect())[0]
    # channels-redis blocks 5 s per pop; a socket timeout as short as that killed idle consumers.
    await asyncio.sleep(layer.brpop_timeout + 1.5)
    await layer.group_send("metrics", {"type": "metrics.sample", "sample": SAMPLE})
    assert (await next_matching(communicator, lambda m: m["sample"]["node"] == "orin-1"))["sample"] == SAMPLE
    await communicator.disconnect()
