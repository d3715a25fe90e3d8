"""manage.py prunelogs: deletes rows older than the given age (or LOG_RETENTION_DAYS), in id batches."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings
from django.utils import timezone

from gateway.models import RequestLog, UsageBucket
from gateway.requestlog import usage
from gateway.requestlog.tests.helpers import make_row


class PruneLogsTestCase(TestCase):
    def setUp(self) -> None:
        now = timezone.now()
        for days in (40, 35, 31, 20, 1):
            make_row(now - timedelta(days=days), request_id=f"{days}d")
        make_row(now - timedelta(hours=3), request_id="3h")

    def prune(self, *args: str) -> str:
        out = StringIO()
        call_command("prunelogs", *args, stdout=out)
        return out.getvalue()

    def left(self) -> list[str]:
        return sorted(RequestLog.objects.values_list("request_id", flat=True))

    def test_it_deletes_rows_older_than_the_age(self) -> None:
        output = self.prune("--older-than", "30d", "--batch", "2")
        self.assertEqual(self.left(), ["1d", "20d", "3h"])
        self.assertIn("Deleted 3 rows", output)

    def test_it_accepts_hours(self) -> None:
        self.prune("--older-than", "2h")
        self.assertEqual(self.left(), [])
        make_row(timezone.now(), request_id="now")
        self.prune("--older-than", "1h")
        self.assertEqual(self.left(), ["now"])

    @override_settings(LOG_RETENTION_DAYS=21)
    def test_it_defaults_to_the_retention_setting(self) -> None:
        self.prune()
        self.assertEqual(self.left(), ["1d", "20d", "3h"])

    def test_it_rejects_bad_ages(self) -> None:
        for age in ("30", "0d", "3w", "-1d"):
            with self.assertRaises(CommandError):
                self.prune("--older-than", age)
        self.assertEqual(len(self.left()), 6)

    def test_it_stores_the_usage_of_the_days_it_keeps(self) -> None:
        self.prune("--older-than", "30d")
        days = UsageBucket.objects.filter(group="day", by="model", who=usage.TOTAL)
        # 30 days back from now, widened to whole days, less the open day (and yesterday, within the grace).
        self.assertGreaterEqual(days.count(), 29)
        closed_days_end = usage.floor(timezone.now() - usage.GRACE, "day")
        kept_in_closed_days = RequestLog.objects.filter(created__lt=closed_days_end).count()
        self.assertGreaterEqual(kept_in_closed_days, 1)  # the 20-day row at least
        self.assertEqual(sum(days.values_list("requests", flat=True)), kept_in_closed_days)
        self.assertFalse(UsageBucket.objects.filter(start__gt=timezone.now() - usage.GRACE).exists())

    def test_it_can_skip_the_usage(self) -> None:
        self.prune("--older-than", "30d", "--no-fill")
        self.assertFalse(UsageBucket.objects.exists())
