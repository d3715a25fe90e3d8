"""Clear the node's Prometheus metrics directory before the gateway starts (runlocal and the systemd unit do)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from gateway import metrics


class Command(BaseCommand):
    help = "Delete the request-metric files of gateway processes that are gone, unless one still runs."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = metrics.clear_directory()
        directory = settings.PROMETHEUS_MULTIPROC_DIR
        if deleted is None:
            self.stdout.write(f"{directory} is in use by a running gateway process: kept")
        else:
            self.stdout.write(f"Deleted {deleted} metric files from {directory}")
