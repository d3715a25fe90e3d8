"""The chat playground streams a real model's reply through the gateway, logs it, and stops it on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from dashboard.tests.conftest import connect
from gateway import requestlog, upstream
from gateway.models import RequestLog
from gateway.registry import register_model
from tests.settle import settle_this_process
from tests.slots import busy_slots, seconds_until_idle

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gemma-dashboard-test"
FREED_WITHIN = 1.0  # seconds from Stop (or the socket closing) to the backend's slot being idle
LONG_STORY = [{"role": "user", "content": "Tell me a very long story about a robot on a Jetson board."}]


@pytest.fixture
async def chat_model(llama_chat: Any, transactional_db: None) -> AsyncIterator[Any]:
    # Its slots idle: a generation an earlier test cancelled must not be mistaken for this test's.
    await asyncio.to_thread(seconds_until_idle, llama_chat.url, 120)
    # ignore_eos: a long reply cannot end on its own while a Stop test waits for its slot.
    await database_sync_to_async(register_model)(
        MODEL, [llama_chat.url], kind="chat", default_params={"ignore_eos": True}
    )
    yield llama_chat
    # Rows of this test must be written before the database is emptied, not during the next test, and the
    # writer's connection closed, or PostgreSQL cannot drop the test database.
    await settle_this_process()
    await upstream.close_sessions()


async def receive_until(communicator: WebsocketCommunicator, *types: str, timeout: float = 120) -> list[dict]:
    """Every message up to and including the first whose type is one of `types`."""
    messages = []
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        messages.append(message)
        if message["type"] in types:
            return messages


async def logged_rows() -> list[RequestLog]:
    await sync_to_async(requestlog.flush)(10)
    return await database_sync_to_async(list)(RequestLog.objects.select_related("owner", "api_key__owner"))


async def test_it_streams_a_reply_and_reports_its_tokens(alice, chat_model) -> None:
    communicator = await connect("/ws/chat/", alice)
    assert (await communicator.connect())[0]
    await communicator.send_json_to(
        {
            "type": "chat",
            "model": MODEL,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.5,
            "max_tokens": 12,
        }
    )
    messages = await receive_until(communicator, "done", "error")
    assert messages[0] == {"type": "started", "model": MODEL}
    deltas = [m["content"] for m in messages if m["type"] == "delta"]
    assert deltas and "".join(deltas).strip()
    done = messages[-1]
    assert done["type"] == "done", done
    assert done["finish_reason"] in {"stop", "length"}
    assert 0 < done["usage"]["completion_tokens"] <= 12
    assert done["tokens_per_second"] > 0
    await communicator.disconnect()


async def test_it_logs_the_chat_under_the_signed_in_user(alice, chat_model) -> None:
    communicator = await connect("/ws/chat/", alice)
    await communicator.connect()
    await communicator.send_json_to({"type": "chat", "model": MODEL, "messages": LONG_STORY, "max_tokens": 4})
    await receive_until(communicator, "done", "error")
    await communicator.disconnect()
    [row] = await logged_rows()
    assert row.owner == alice
    assert row.api_key.owner == alice
    assert row.key_name == "dashboard: alice"
    assert row.endpoint == "/ws/chat/"
    assert (row.status, row.model_used, row.backend) == (200, MODEL, chat_model.url)
    assert row.completion_tokens and row.completion_tokens <= 4


async def test_it_stops_generation_and_frees_the_backend_slot(alice, chat_model) -> None:
    communicator = await connect("/ws/chat/", alice)
    await communicator.connect()
    await communicator.send_json_to({"type": "chat", "model": MODEL, "messages": LONG_STORY, "max_tokens": 900})
    await receive_until(communicator, "delta")
    assert await asyncio.to_thread(busy_slots, chat_model.url) == 1
    await communicator.send_json_to({"type": "stop"})
    messages = await receive_until(communicator, "stopped", "done", "error")
    assert messages[-1] == {"type": "stopped"}
    assert await asyncio.to_thread(seconds_until_idle, chat_model.url, 30) <= FREED_WITHIN
    await communicator.disconnect()
    [row] = await logged_rows()
    assert row.client_gone
    assert row.status == 499


async def test_it_frees_the_slot_when_the_socket_closes_mid_reply(alice, chat_model) -> None:
    communicator = await connect("/ws/chat/", alice)
    await communicator.connect()
    await communicator.send_json_to({"type": "chat", "model": MODEL, "messages": LONG_STORY, "max_tokens": 900})
    await receive_until(communicator, "delta")
    await communicator.disconnect()
    assert await asyncio.to_thread(seconds_until_idle, chat_model.url, 30) <= FREED_WITHIN


async def test_it_reports_and_logs_an_unknown_model(alice, chat_model) -> None:
    communicator = await connect("/ws/chat/", alice)
    await communicator.connect()
    await communicator.send_json_to({"type": "chat", "model": "<b>nope</b>", "messages": LONG_STORY})
    [error] = await receive_until(communicator, "error")
    assert error["status"] == 404
    assert "<b>nope</b>" in error["message"]
    await communicator.disconnect()
    [row] = await logged_rows()
    assert (row.status, row.model_requested, row.owner) == (404, "<b>nope</b>", alice)


async def test_it_refuses_a_second_chat_while_one_is_running(alice, chat_model) -> None:
    communicator = await connect("/ws/chat/", alice)
    await communicator.connect()
    await communicator.send_json_to({"type": "chat", "model": MODEL, "messages": LONG_STORY, "max_tokens": 900})
    await receive_until(communicator, "delta")
    await communicator.send_json_to({"type": "chat", "model": MODEL, "messages": LONG_STORY})
    messages = await receive_until(communicator, "error")
    assert "still being generated" in messages[-1]["message"]
    await communicator.send_json_to({"type": "stop"})
    await receive_until(communicator, "stopped")
    await communicator.disconnect()


async def test_it_refuses_users_without_access(bob) -> None:
    communicator = await connect("/ws/chat/", bob)
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403


async def test_it_passes_images_to_the_gateway_which_refuses_them_for_a_text_model(alice, chat_model) -> None:
    communicator = await connect("/ws/chat/", alice)
    await communicator.connect()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "What is this?"}, image]
    await communicator.send_json_to(
        {"type": "chat", "model": MODEL, "messages": [{"role": "user", "content": content}]}
    )
    [error] = await receive_until(communicator, "error")
    assert error["status"] == 400
    assert "does not accept images" in error["message"]
    await communicator.disconnect()


async def test_it_answers_an_unknown_message_type_with_an_error(alice) -> None:
    communicator = await connect("/ws/chat/", alice)
    await communicator.connect()
    await communicator.send_json_to({"type": "shutdown"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "error", "message": "Unknown message type."}
    await communicator.send_json_to({"type": "stop"})  # nothing running: nothing to report
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()
