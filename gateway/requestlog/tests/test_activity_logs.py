"""The original service's paths: GET /api/activity-logs?limit=N and POST /api/activity-logs/clear (staff only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib.admin.models import DELETION, LogEntry
from django.test import Client

from gateway.models import RequestLog
from gateway.requestlog.tests.helpers import LogsTestCase, make_row

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


class ActivityLogsTestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        for n in range(3):
            make_row(T0 + timedelta(seconds=n), request_id=f"r{n}", model_used="qwen", latency_ms=12.34 + n,
                     client_ip="192.0.2.1", prompt_preview=f"hello {n}")  # fmt: skip

    def test_it_lists_the_newest_rows_in_the_original_field_names(self) -> None:
        response = self.client.get("/api/activity-logs?limit=2", **self.bearer(self.reader_plaintext))
        self.assertEqual(response.status_code, 200)
        logs = response.json()["logs"]
        self.assertEqual(len(logs), 2)
        self.assertEqual(logs[0], {
            "timestamp": "2026-11-03T08:00:02Z", "method": "POST", "path": "/v1/chat/completions", "model": "qwen",
            "status": 200, "response_time": 14.3, "client_ip": "192.0.2.1", "preview": "hello 2",
        })  # fmt: skip

    def test_it_rejects_a_bad_limit(self) -> None:
        response = self.client.get("/api/activity-logs?limit=0", **self.bearer(self.reader_plaintext))
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["error"]["param"], "limit")

    def test_it_needs_the_logs_scope(self) -> None:
        self.assertEqual(self.client.get("/api/activity-logs").status_code, 401)
        self.assertEqual(self.client.get("/api/activity-logs", **self.bearer(self.client_plaintext)).status_code, 403)

    def test_clear_deletes_the_rows_and_leaves_an_admin_log_entry(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post("/api/activity-logs/clear")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"cleared": 3})
        self.assertEqual(RequestLog.objects.count(), 0)
        entry = LogEntry.objects.get()
        self.assertEqual((entry.user, entry.action_flag), (self.alice, DELETION))
        self.assertIn("3 rows", entry.change_message)

    def test_clear_is_for_staff_sessions_only(self) -> None:
        # Even a key with the logs scope may only read.
        self.assertIn(self.client.post("/api/activity-logs/clear", **self.bearer(self.reader_plaintext)).status_code,
                      (401, 403))  # fmt: skip
        self.client.force_login(self.bob)
        self.assertEqual(self.client.post("/api/activity-logs/clear").status_code, 403)
        self.assertEqual(RequestLog.objects.count(), 3)

    def test_clear_enforces_csrf(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        response = client.post("/api/activity-logs/clear")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(RequestLog.objects.count(), 3)
