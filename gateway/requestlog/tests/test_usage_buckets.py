"""Usage of closed hours and days is computed once and stored; open ones are live; late rows and pruning refresh it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from gateway import requestlog
from gateway.models import UsageBucket
from gateway.requestlog import usage
from gateway.requestlog.tests.helpers import LogsTestCase, WriterTestCase, make_row, today_both_ways

T0 = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
DAY = (T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))


def requests_per_bucket(group: str = "hour", since: datetime = DAY[0], until: datetime = DAY[1]) -> dict[str, int]:
    return {d["bucket"]: d["requests"] for d in usage.usage(since, until, group, "model")}


class StoredBucketsTestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        make_row(T0 + timedelta(minutes=5), model_used="qwen", latency_ms=10.0)

    def test_it_stores_closed_buckets_and_serves_them_from_the_store(self) -> None:
        self.assertEqual(requests_per_bucket(), {"2026-11-05T10:00:00Z": 1})
        # Every hour of the day is stored, empty ones as a bare total.
        self.assertEqual(UsageBucket.objects.filter(group="hour", by="model", who=usage.TOTAL).count(), 24)
        # A row written behind the store's back (not through the writer) is not seen: the store answered.
        make_row(T0 + timedelta(minutes=6), model_used="qwen", latency_ms=20.0)
        self.assertEqual(requests_per_bucket(), {"2026-11-05T10:00:00Z": 1})
        usage.forget([T0 + timedelta(minutes=6)])
        self.assertEqual(requests_per_bucket(), {"2026-11-05T10:00:00Z": 2})

    def test_it_computes_open_buckets_live(self) -> None:
        now = timezone.now()
        since, until = now - timedelta(hours=1), now + timedelta(hours=1)
        make_row(now, model_used="qwen")
        first = sum(requests_per_bucket(since=since, until=until).values())
        make_row(now, model_used="qwen")
        self.assertEqual(sum(requests_per_bucket(since=since, until=until).values()), first + 1)

    def test_today_adds_up_to_what_its_rows_say(self) -> None:
        now = timezone.now()
        for k in range(13):
            make_row(now - timedelta(minutes=17 * k), model_used="qwen" if k % 3 else "gemma", latency_ms=10.0 * k + 1,
                     status=500 if k % 5 == 0 else 200, prompt_tokens=k, completion_tokens=2 * k,
                     api_key=self.reader if k % 2 else None)  # fmt: skip
        for by in usage.BY:
            answered, direct = today_both_ways(by)
            self.assertEqual(answered, direct)
            self.assertEqual(sum(d["requests"] for d in direct), 13)

    def test_pruning_drops_the_stored_buckets_it_affects(self) -> None:
        requests_per_bucket("day")
        self.assertTrue(UsageBucket.objects.exists())
        call_command("prunelogs", "--older-than", "1h", stdout=StringIO())
        self.assertFalse(UsageBucket.objects.filter(start__lt=T0 + timedelta(days=1)).exists())
        self.assertEqual(requests_per_bucket("day"), {})


class LateRowsTestCase(WriterTestCase):
    def test_a_late_row_from_the_writer_refreshes_its_bucket(self) -> None:
        make_row(T0, model_used="qwen")
        self.assertEqual(requests_per_bucket(), {"2026-11-05T10:00:00Z": 1})
        record = requestlog.RequestRecord(endpoint="/v1/chat/completions", created=T0 + timedelta(minutes=30))
        record.model_used = "qwen"
        record.finish(200)
        requestlog.submit(record)
        self.assertTrue(requestlog.flush(timeout=5))
        self.assertEqual(requests_per_bucket(), {"2026-11-05T10:00:00Z": 2})
        self.assertEqual(requests_per_bucket("day"), {"2026-11-05T00:00:00Z": 2})
