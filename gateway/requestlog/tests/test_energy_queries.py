"""The logs API and usage read each row's energy facts within their own queries: as many queries for 60 measured rows
as for 3, and the same answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext

from gateway.models import UsageBucket
from gateway.requestlog.tests.helpers import LogsTestCase, make_row

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
LOGS = "/api/logs?since=2026-11-02T00:00:00Z&limit=100"
USAGE = "/api/usage?group=hour&since=2026-11-02T00:00:00Z&until=2026-11-03T00:00:00Z"


class EnergyQueriesTestCase(LogsTestCase):
    def queries(self, url: str) -> tuple[int, dict]:
        UsageBucket.objects.all().delete()  # each time computed from the rows
        with CaptureQueriesContext(connection) as captured:
            response = self.client.get(url, **self.bearer(self.reader_plaintext))
        self.assertEqual(response.status_code, 200, response.content)
        return len(captured), response.json()

    def rows(self, first: int, count: int) -> None:
        for n in range(first, first + count):
            make_row(T0 + timedelta(minutes=n), model_used="qwen", completion_tokens=10, energy_mj=1000.0 * n)

    def test_it_reads_energy_in_a_bounded_number_of_queries(self) -> None:
        self.rows(1, 3)
        self.queries(LOGS)  # the key's first use of the minute is recorded (an UPDATE): not counted below
        few, page = self.queries(LOGS)
        self.assertEqual(sorted(row["energy_mj"] for row in page["results"]), [1000.0, 2000.0, 3000.0])
        few_usage, _ = self.queries(USAGE)
        self.rows(4, 57)
        many, page = self.queries(LOGS)
        self.assertEqual(len(page["results"]), 60)
        self.assertEqual(many, few)
        many_usage, body = self.queries(USAGE)
        self.assertEqual(many_usage, few_usage)
        hour = next(d for d in body["data"] if d["bucket"] == "2026-11-02T10:00:00Z")
        self.assertEqual(hour["energy_j"], sum(range(1, 60)))  # 10:01 to 10:59
