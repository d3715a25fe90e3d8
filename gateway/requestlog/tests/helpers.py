"""Shared fixtures for the request-log tests: alice (staff), bob (no rights), keys with and without the logs scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.test import TestCase, TransactionTestCase

from gateway import requestlog
from gateway.models import APIKey, RequestLog
from gateway.requestlog import writer


def reset_writer() -> None:
    """End the writer thread (closing its connection) and forget buffered rows and counters."""
    requestlog.stop(timeout=5)
    state = writer._writer
    with state.lock:
        state.buffer.clear()
    state.dropped = 0
    state.last_drop_warning = -writer.DROP_WARNING_EVERY
    state.loop = None


def make_row(created: datetime, **fields: Any) -> RequestLog:
    defaults: dict[str, Any] = {"request_id": "r", "endpoint": "/v1/chat/completions", "status": 200}
    return RequestLog.objects.create(created=created, **{**defaults, **fields})


class LogsTestMixin:
    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        users = get_user_model().objects
        self.alice = users.create_user("alice", is_staff=True)
        self.bob = users.create_user("bob")
        self.reader, self.reader_plaintext = APIKey.objects.create_key(name="reader", scope_logs=True, owner=self.bob)
        self.client_key, self.client_plaintext = APIKey.objects.create_key(name="client", owner=self.bob)

    def bearer(self, plaintext: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}


class LogsTestCase(LogsTestMixin, TestCase):
    pass


class WriterTestCase(LogsTestMixin, TransactionTestCase):
    """For tests whose rows are written by the writer thread, on its own connection."""

    def setUp(self) -> None:
        reset_writer()
        super().setUp()

    def tearDown(self) -> None:
        reset_writer()
        super().tearDown()
