"""Shared fixtures for the request-log tests: alice (staff), bob (no rights), keys with and without the logs scope."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from gateway import requestlog
from gateway.models import APIKey, EnergyFact, RequestLog
from gateway.requestlog import usage, writer


def reset_writer() -> None:
    """End the writer thread (closing its connection) and forget buffered rows and counters."""
    requestlog.stop(timeout=5)
    state = writer._writer
    with state.lock:
        state.buffer.clear()
    state.dropped = 0
    state.last_drop_warning = -writer.DROP_WARNING_EVERY
    state.loop = None


def make_row(
    created: datetime, energy_mj: float | None = None, energy_net_mj: float | None = None, **fields: Any
) -> RequestLog:
    """A row (of a request of its own unless `request_id` says); with `energy_mj`, its request's energy as its node's
    sampler would have written it: a fact of its own."""
    defaults: dict[str, Any] = {"request_id": uuid.uuid4().hex, "endpoint": "/v1/chat/completions", "status": 200}
    row = RequestLog.objects.create(created=created, **{**defaults, **fields})
    if energy_mj is not None:
        make_fact(row.request_id, energy_mj, energy_net_mj, start=created, model=row.model_used)
    return row


def make_fact(
    request_id: str, gross_mj: float, net_mj: float | None = None, start: datetime | None = None, **fields: Any
) -> EnergyFact:
    """One lease's energy fact; leases are numbered per request, as the gateway does."""
    start = start or timezone.now()
    lease = f"{request_id}.{EnergyFact.objects.filter(request_id=request_id).count() + 1}"
    values: dict[str, Any] = {"node": "orin-1", "model": "qwen", "source": "VDD_IN", "start": start, "end": start,
                              "seconds": 0.0, "measured_seconds": 0.0, **fields}  # fmt: skip
    return EnergyFact.objects.create(lease=lease, request_id=request_id, gross_mj=gross_mj, net_mj=net_mj, **values)


def today_both_ways(by: str) -> tuple[list[dict], list[dict]]:
    """Today's (and the last four hours') daily usage by `by`, as the API answers it (the open day added up from
    stored hours and rows) and as computed straight from the rows."""
    now = timezone.now()
    since = usage.floor(now - timedelta(hours=4), "day")
    until = usage.next_start(usage.floor(now, "day"), "day")
    computed = sorted(usage.compute(since, until, "day", by), key=lambda r: (r["start"], r["who"]))
    return usage.usage(since, until, "day", by), usage._present(computed, by)


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
