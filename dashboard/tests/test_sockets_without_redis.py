"""Without Redis the dashboard's sockets do not break: a live socket (metrics, request log) closes with 1013, "try
again later", and the page's reconnect gets the pushes again once Redis is back; the chat and models sockets use no
channel layer at all."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer

from dashboard.consumers import CLOSE_TRY_AGAIN
from dashboard.tests.conftest import connect, next_matching
from gateway.llama import free_port
from tests.redis_server import PrivateRedis, channel_layer_at

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = {"node": "orin-1", "time": "2026-11-25T10:00:00+00:00", "summary": {"cpu_percent": 12.5}}


@pytest.mark.parametrize("path", ["/ws/metrics/", "/ws/logs/"])
async def test_a_live_socket_is_refused_with_try_again_while_redis_is_unreachable(
    settings: Any, alice: object, path: str
) -> None:
    settings.CHANNEL_LAYERS = channel_layer_at(f"redis://127.0.0.1:{free_port()}/0")
    communicator = await connect(path, alice)
    assert await communicator.connect() == (False, CLOSE_TRY_AGAIN)


async def test_a_live_socket_closes_when_redis_goes_and_its_successor_gets_the_pushes_again(
    settings: Any, alice: object, private_redis: PrivateRedis
) -> None:
    settings.CHANNEL_LAYERS = channel_layer_at(private_redis.url)
    communicator = await connect("/ws/metrics/", alice)
    assert (await communicator.connect())[0]
    private_redis.stop()
    assert await communicator.receive_output(timeout=20) == {"type": "websocket.close", "code": CLOSE_TRY_AGAIN}
    private_redis.start()  # empty: the group's membership is gone with the old server
    successor = await connect("/ws/metrics/", alice)
    assert (await successor.connect())[0]
    await get_channel_layer().group_send("metrics", {"type": "metrics.sample", "sample": SAMPLE})
    assert (await next_matching(successor, lambda m: m["sample"]["node"] == "orin-1"))["sample"] == SAMPLE
    await successor.disconnect()


async def test_the_chat_and_models_sockets_need_no_redis(settings: Any, alice: object) -> None:
    settings.CHANNEL_LAYERS = channel_layer_at(f"redis://127.0.0.1:{free_port()}/0")
    chat = await connect("/ws/chat/", alice)
    assert (await chat.connect())[0]
    await chat.send_json_to({"type": "hello?"})
    assert await chat.receive_json_from(timeout=5) == {"type": "error", "message": "Unknown message type."}
    await chat.disconnect()
    models = await connect("/ws/models/", alice)
    assert (await models.connect())[0]
    assert (await models.receive_json_from(timeout=5))["type"] == "snapshot"
    await models.disconnect()
