"""Waiting, before the test database is reset, until every request a test made has its log row written.

Servers write log rows from a background thread after the response has gone out (gateway/requestlog/writer.py).
After each transactional test pytest-django empties the database with one TRUNCATE of every table; on PostgreSQL
an INSERT of a log row racing it deadlocks (the INSERT holds the log table and waits for the key's, the TRUNCATE
the other way round), and elsewhere a late row lands in the next test. So every fixture that hands a test a
server settles it in its teardown, which runs before the database fixture's.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from asgiref.sync import SyncToAsync
from django.db import connections
from django.utils import timezone

POLL = 0.05  # seconds between looks


def settle_live_server(url: str, limit: float = 120) -> None:
    """Wait until the live server at `url` reports no log row waiting and no request whose record is not
    submitted yet (its /health); AssertionError after `limit` seconds."""
    from gateway.models import APIKey

    # A key of its own (the test may have revoked or expired its keys), marked as just used so that the server
    # has no reason to write its last use back.
    _, key = APIKey.objects.create_key(name="settling the live server", last_used=timezone.now())
    deadline = time.monotonic() + limit
    while True:
        response = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {key}"}, timeout=limit)
        assert response.status_code == 200, f"{url}/health answered {response.status_code}: {response.text}"
        log = response.json()["request_log"]
        if log["pending"] == 0 and log["in_progress"] == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} has not written its request log after {limit:.0f} s: {log}")
        time.sleep(POLL)


async def settle_this_process(limit: float = 60) -> None:
    """The same for requests this process served itself (ASGI transport, websocket communicators): then end
    the writer thread and close the connections the app opened from asgiref's shared thread."""
    from gateway import requestlog

    deadline = time.monotonic() + limit
    while requestlog.in_progress_count():
        if time.monotonic() > deadline:
            raise AssertionError(f"{requestlog.in_progress_count()} requests still in progress after {limit:.0f} s")
        await asyncio.sleep(POLL)
    written = await asyncio.to_thread(requestlog.stop, limit)
    assert written, f"the request log writer still had {requestlog.pending_count()} rows after {limit:.0f} s"
    # sync_to_async outside a request runs on asgiref's one shared thread: its connections outlive the test.
    await asyncio.wrap_future(SyncToAsync.single_thread_executor.submit(connections.close_all))
