"""Delete request log rows older than a given age (default LOG_RETENTION_DAYS) in batches; precompute usage."""

from __future__ import annotations

import re
import signal
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from gateway.requestlog import retention, usage


def parse_age(value: str) -> timedelta:
    """ "30d" or "12h" as a timedelta."""
    match = re.fullmatch(r"(\d+)([dh])", value.strip())
    if not match or int(match[1]) == 0:
        raise CommandError(f"--older-than must look like 30d or 12h, not {value!r}")
    amount = int(match[1])
    return timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount)


class Command(BaseCommand):
    help = "Delete request log rows older than --older-than (e.g. 30d, 12h; default LOG_RETENTION_DAYS days)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", help="age such as 30d or 12h")
        parser.add_argument("--batch", type=int, default=retention.BATCH, help="ids per DELETE statement")
        parser.add_argument("--no-fill", action="store_true", help="do not precompute usage of the rows kept")

    def on_sigterm(self, *args: Any) -> None:
        # Stop between batches rather than in the middle of one.
        self.shutdown = True

    def handle(self, *args: Any, **options: Any) -> None:
        self.shutdown = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.on_sigterm)
        age = parse_age(options["older_than"]) if options["older_than"] else timedelta(days=settings.LOG_RETENTION_DAYS)
        if options["batch"] < 1:
            raise CommandError("--batch must be positive")
        cutoff = timezone.now() - age
        self.stdout.write(f"Deleting request log rows created before {cutoff:%Y-%m-%d %H:%M:%S %Z}")
        total = 0
        for deleted in retention.delete_in_batches(cutoff, options["batch"]):
            total += deleted
            if deleted:
                self.stdout.write(f"  deleted {deleted} rows ({total} so far)")
            if self.shutdown:
                self.stdout.write("Stopped by SIGTERM")
                break
        self.stdout.write(f"Deleted {total} rows")
        if not options["no_fill"] and not self.shutdown:
            # Daily pruning is a quiet moment to compute the usage figures of the days kept, once.
            usage.fill(cutoff, timezone.now())
            self.stdout.write("Stored usage figures of closed hours and days")
