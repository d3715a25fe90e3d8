"""The request log shows each row's error code and energy (its energy facts): the logs API, the admin's list (an
energy column, filters by error code and by whether it was measured, the facts themselves) and its CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from django.test import override_settings

from gateway.models import RequestLog
from gateway.requestlog.tests.helpers import LogsTestCase, make_row

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
ADMIN = "/admin/gateway/requestlog/"


@override_settings(
    STORAGES={
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
)
class EnergyAndErrorCodeTestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.measured = make_row(T0, request_id="measured", model_used="qwen", completion_tokens=30,
                                 energy_mj=12345.6, energy_net_mj=4321.0)  # fmt: skip
        self.refused = make_row(T0, request_id="refused", model_used="qwen", status=503, error_type="server_error",
                                error_code="device_overheated", error_message="The device is too hot.")  # fmt: skip
        make_row(T0, request_id="queued", model_used="qwen", status=429, error_code="model_queue_full")
        self.alice.is_superuser = True
        self.alice.save()

    def test_the_logs_api_gives_them(self) -> None:
        response = self.client.get("/api/logs?since=2026-11-25T00:00:00Z", **self.bearer(self.reader_plaintext))
        rows = {row["request_id"]: row for row in response.json()["results"]}
        self.assertEqual((rows["measured"]["energy_mj"], rows["measured"]["energy_net_mj"]), (12345.6, 4321.0))
        self.assertEqual(rows["measured"]["error_code"], "")
        self.assertEqual(rows["refused"]["error_code"], "device_overheated")
        self.assertIsNone(rows["refused"]["energy_mj"])  # not measured: empty, never zero

    def test_the_admin_lists_energy_and_filters_by_error_code(self) -> None:
        self.client.force_login(self.alice)
        listed = self.client.get(ADMIN)
        self.assertContains(listed, "Energy (J)</a>")
        self.assertContains(listed, '<td class="field-energy_j">12.346</td>', html=False)
        changelist = listed.context["cl"]
        codes = next(spec for spec in changelist.filter_specs if spec.title == "error code")
        choices = [choice["display"] for choice in codes.choices(changelist)]
        # The admission's refusals are always offered; other codes when recent rows have them.
        self.assertEqual(choices, ["All", "device_overheated", "power_limit", "model_queue_full"])
        filtered = self.client.get(ADMIN, {"error_code": "device_overheated"})
        self.assertEqual(list(filtered.context["cl"].queryset), [self.refused])
        self.assertContains(self.client.get(f"{ADMIN}{self.measured.pk}/change/"), "12.346")
        measured = self.client.get(ADMIN, {"measured": "yes"})
        self.assertEqual([row.request_id for row in measured.context["cl"].queryset], ["measured"])
        unmeasured = self.client.get(ADMIN, {"measured": "no"})
        self.assertEqual({row.request_id for row in unmeasured.context["cl"].queryset}, {"refused", "queued"})

    def test_the_admin_lists_each_leases_energy_fact(self) -> None:
        self.client.force_login(self.alice)
        listed = self.client.get("/admin/gateway/energyfact/")
        self.assertContains(listed, '<td class="field-lease">measured.1</td>', html=False)

    def test_the_csv_export_has_them(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(
            ADMIN, {"action": "export_csv", "_selected_action": [str(r.pk) for r in RequestLog.objects.all()]}
        )
        rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
        self.assertEqual((rows["measured"]["energy_mj"], rows["measured"]["energy_net_mj"]), ("12345.6", "4321.0"))
        self.assertEqual(rows["refused"]["error_code"], "device_overheated")
        self.assertEqual(rows["refused"]["energy_mj"], "")
