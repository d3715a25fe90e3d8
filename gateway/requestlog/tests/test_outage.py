"""While the database is unavailable, rows wait in a bounded buffer; beyond the bound they are dropped and counted."""

from __future__ import annotations

from unittest.mock import patch

from django.db import OperationalError
from django.test import override_settings

from gateway import requestlog
from gateway.models import RequestLog
from gateway.requestlog import writer
from gateway.requestlog.tests.helpers import WriterTestCase


def _record(n: int) -> requestlog.RequestRecord:
    record = requestlog.RequestRecord(endpoint="/v1/completions", request_id=f"req{n}")
    record.finish(200)
    return record


def _database_down(*args: object, **kwargs: object) -> list:
    raise OperationalError("could not connect to server")


@override_settings(LOG_BUFFER_SIZE=5)
class OutageTestCase(WriterTestCase):
    def test_it_keeps_rows_while_the_database_is_down_and_writes_them_after(self) -> None:
        with (
            patch.object(writer, "_insert_many", _database_down),
            patch.object(writer, "RETRY_DELAY", 0.05),
        ):
            for n in range(3):
                requestlog.submit(_record(n))
            self.assertFalse(requestlog.flush(timeout=0.5))
            self.assertEqual(requestlog.pending_count(), 3)
        self.assertTrue(requestlog.flush(timeout=5))
        self.assertEqual(sorted(RequestLog.objects.values_list("request_id", flat=True)), ["req0", "req1", "req2"])
        self.assertEqual(requestlog.dropped_count(), 0)

    def test_it_drops_and_counts_rows_beyond_the_bound(self) -> None:
        with (
            patch.object(writer, "_insert_many", _database_down),
            self.assertLogs("gateway.requestlog", "WARNING") as logs,
        ):
            for n in range(8):
                requestlog.submit(_record(n))  # must not raise
            self.assertEqual(requestlog.pending_count(), 5)
            self.assertEqual(requestlog.dropped_count(), 3)
        full = [line for line in logs.output if "buffer full" in line]
        self.assertEqual(len(full), 1, "the warning is rate-limited")
        self.assertIn("1 rows dropped so far", full[0])
        # The oldest rows were kept: what was waiting is written once the database is back.
        self.assertTrue(requestlog.flush(timeout=5))
        self.assertEqual(sorted(RequestLog.objects.values_list("request_id", flat=True)), [f"req{n}" for n in range(5)])

    def test_it_survives_unexpected_errors_in_submit(self) -> None:
        with (
            patch.object(writer._writer, "put", side_effect=RuntimeError("boom")),
            self.assertLogs("gateway.requestlog"),
        ):
            requestlog.submit(_record(0))  # logs, never raises
