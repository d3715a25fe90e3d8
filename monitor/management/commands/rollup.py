"""`manage.py rollup`: roll raw samples into minute rollups, then delete what is past its retention."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from monitor.models import prune, roll_up


class Command(BaseCommand):
    help = "Roll raw samples up into 1-minute averages and maxima, and prune samples and rollups past retention."

    def handle(self, *args: object, **options: object) -> None:
        now = timezone.now()
        made = roll_up(now)
        samples, rollups = prune(now, settings.MONITOR_RAW_RETENTION_HOURS, settings.MONITOR_ROLLUP_RETENTION_DAYS)
        self.stdout.write(f"{made} rollups made, {samples} samples and {rollups} rollups deleted")
