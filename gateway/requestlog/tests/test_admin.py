"""The admin's request log: read-only list with filters and search, and a CSV export action."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from django.test import override_settings

from gateway.models import RequestLog
from gateway.requestlog import usage
from gateway.requestlog.tests.helpers import LogsTestCase, make_row

T0 = datetime(2026, 11, 4, 9, 0, tzinfo=UTC)


# Admin pages link static files; the manifest exists only after collectstatic, which these tests do not need.
@override_settings(
    STORAGES={
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
)
class RequestLogAdminTestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice.is_superuser = True
        self.alice.save()
        self.client.force_login(self.alice)
        self.row = make_row(T0, request_id="abc", model_used="qwen", error_message="=HYPERLINK(evil)", status=502)
        make_row(T0, request_id="def", model_used="gemma")

    def test_it_lists_filters_and_searches(self) -> None:
        url = "/admin/gateway/requestlog/"
        response = self.client.get(url, {"status_class": "5", "q": "qwen"})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "/v1/chat/completions")
        self.assertEqual(list(response.context["cl"].queryset), [self.row])

    def test_it_is_read_only(self) -> None:
        self.assertEqual(self.client.get("/admin/gateway/requestlog/add/").status_code, 403)
        response = self.client.post(f"/admin/gateway/requestlog/{self.row.pk}/change/", {"status": 200})
        self.assertEqual(response.status_code, 403)
        self.row.refresh_from_db()
        self.assertEqual(self.row.status, 502)

    def test_it_exports_csv(self) -> None:
        response = self.client.post(
            "/admin/gateway/requestlog/",
            {"action": "export_csv", "_selected_action": [str(r.pk) for r in RequestLog.objects.all()]},
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "text/csv")
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        self.assertEqual(sorted(r["request_id"] for r in rows), ["abc", "def"])
        # A client-supplied message must not run as a spreadsheet formula.
        self.assertEqual(next(r for r in rows if r["request_id"] == "abc")["error_message"], "'=HYPERLINK(evil)")

    def test_deleting_rows_refreshes_stored_usage(self) -> None:
        day = (T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))
        self.assertEqual(sum(d["requests"] for d in usage.usage(*day, "day", "model")), 2)
        response = self.client.post(
            "/admin/gateway/requestlog/",
            {"action": "delete_selected", "_selected_action": [str(self.row.pk)], "post": "yes"},
        )
        self.assertEqual(response.status_code, 302)
        self.assertEqual(sum(d["requests"] for d in usage.usage(*day, "day", "model")), 1)
