"""A dashboard chat is logged with the peer's address; X-Forwarded-For counts only when the peer is a trusted proxy."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from dashboard.tests.conftest import connect
from gateway import requestlog
from gateway.models import RequestLog

pytestmark = pytest.mark.django_db(transaction=True)

PEER = "192.0.2.10"


async def logged_address(user: Any) -> str | None:
    """Chat with a model that does not exist (refused and logged, no backend needed); the row's client IP."""
    communicator = await connect("/ws/chat/", user)
    # Set before the application first reads its scope (on connect): daphne fills these from the socket and request.
    communicator.scope["client"] = [PEER, 40000]
    communicator.scope["headers"].append((b"x-forwarded-for", b"203.0.113.9"))
    assert (await communicator.connect())[0]
    await communicator.send_json_to(
        {"type": "chat", "model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert (await communicator.receive_json_from(timeout=10))["type"] == "error"
    await communicator.disconnect()
    # stop, not flush: the writer's connection must be closed before the test database is dropped.
    await sync_to_async(requestlog.stop)(10)
    row = await database_sync_to_async(RequestLog.objects.get)(endpoint="/ws/chat/")
    return row.client_ip


async def test_it_logs_the_peer_when_it_is_not_a_trusted_proxy(alice: Any, settings: Any) -> None:
    settings.TRUSTED_PROXIES = []
    assert await logged_address(alice) == PEER


async def test_it_logs_the_forwarded_address_from_a_trusted_proxy(alice: Any, settings: Any) -> None:
    settings.TRUSTED_PROXIES = [PEER]
    assert await logged_address(alice) == "203.0.113.9"
