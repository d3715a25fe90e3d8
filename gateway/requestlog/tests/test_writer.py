"""The writer: submitted records become rows in batches, off the caller's thread, and flush() waits for them."""

from __future__ import annotations

from unittest.mock import patch

from django.test import override_settings

from gateway import requestlog
from gateway.models import RequestLog
from gateway.requestlog import writer
from gateway.requestlog.tests.helpers import WriterTestCase


def _record(**fields: object) -> requestlog.RequestRecord:
    record = requestlog.RequestRecord(endpoint="/v1/chat/completions")
    for name, value in fields.items():
        setattr(record, name, value)
    record.finish(fields.get("status", 200))  # type: ignore[arg-type]
    return record


class SubmitTestCase(WriterTestCase):
    def test_it_writes_submitted_records_on_flush(self) -> None:
        record = _record(api_key_id=self.reader.id, key_name="reader", owner_id=self.bob.id, model_requested="m",
                         model_used="m", backend="http://127.0.0.1:8081", prompt_tokens=5, completion_tokens=7,
                         stream=True, client_ip="10.0.0.1", user_agent="curl/8")  # fmt: skip
        requestlog.submit(record)
        self.assertTrue(requestlog.flush(timeout=5))
        row = RequestLog.objects.get()
        self.assertEqual(row.request_id, record.request_id)
        self.assertEqual(row.api_key_id, self.reader.id)
        self.assertEqual(row.owner_id, self.bob.id)
        self.assertEqual((row.model_used, row.status, row.prompt_tokens, row.completion_tokens), ("m", 200, 5, 7))
        self.assertTrue(row.stream)
        self.assertEqual(row.client_ip, "10.0.0.1")
        self.assertIsNotNone(row.latency_ms)
        self.assertEqual(requestlog.pending_count(), 0)

    def test_it_writes_in_batches(self) -> None:
        real = writer._insert_many
        sizes: list[int] = []

        def spy(rows: list, *args: object, **kwargs: object) -> list:
            sizes.append(len(rows))
            return real(rows, *args, **kwargs)

        with patch.object(writer, "BATCH_SIZE", 3), patch.object(writer, "_insert_many", spy):
            for _ in range(7):
                requestlog.submit(_record())
            self.assertTrue(requestlog.flush(timeout=5))
        self.assertEqual(RequestLog.objects.count(), 7)
        self.assertEqual(sum(sizes), 7)
        self.assertLessEqual(max(sizes), 3)

    def test_it_does_not_block_the_caller_on_the_database(self) -> None:
        # submit() only appends to the buffer: the row is not there until the writer has run.
        with override_settings(LOG_FLUSH_INTERVAL=60):
            requestlog.submit(_record())
            self.assertEqual(requestlog.pending_count(), 1)
            self.assertTrue(requestlog.flush(timeout=5))
        self.assertEqual(RequestLog.objects.count(), 1)

    @override_settings(LOG_ENABLED=False)
    def test_it_records_nothing_when_disabled(self) -> None:
        requestlog.submit(_record())
        self.assertEqual(requestlog.pending_count(), 0)
        self.assertTrue(requestlog.flush(timeout=1))
        self.assertEqual(RequestLog.objects.count(), 0)

    def test_it_clips_long_values_to_their_columns(self) -> None:
        requestlog.submit(_record(model_requested="m" * 500, user_agent="u" * 1000, client_ip="not an ip"))
        self.assertTrue(requestlog.flush(timeout=5))
        row = RequestLog.objects.get()
        self.assertEqual(len(row.model_requested), 200)
        self.assertEqual(len(row.user_agent), 300)
        self.assertIsNone(row.client_ip)

    def test_it_writes_a_row_whose_key_was_deleted_meanwhile(self) -> None:
        # An id no key has (any more): the database rejects the foreign key.
        requestlog.submit(_record(api_key_id=self.client_key.id + 1000, key_name="client"))
        requestlog.submit(_record(status=404))
        self.assertTrue(requestlog.flush(timeout=5))
        self.assertEqual(RequestLog.objects.count(), 2)
        row = RequestLog.objects.get(key_name="client")
        self.assertIsNone(row.api_key_id)

    def test_it_drops_a_malformed_record_without_blocking_the_others(self) -> None:
        bad = _record()
        bad.status = None  # type: ignore[assignment]
        worse = _record()
        worse.created = "yesterday"  # type: ignore[assignment]
        with self.assertLogs("gateway.requestlog", "WARNING"):
            for record in (bad, _record(status=201), worse, _record(status=202)):
                requestlog.submit(record)
            self.assertTrue(requestlog.flush(timeout=5))
        self.assertEqual(sorted(RequestLog.objects.values_list("status", flat=True)), [201, 202])
        self.assertEqual(requestlog.dropped_count(), 2)
