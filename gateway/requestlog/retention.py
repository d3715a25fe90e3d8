"""Deleting request log rows (and their energy facts) in primary-key batches, so that pruning millions of rows keeps
the database responsive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet

from gateway.models import EnergyFact, RequestLog
from gateway.requestlog import usage

BATCH = 10_000


def delete_in_batches(before: datetime | None = None, batch: int = BATCH) -> Iterator[int]:
    """Delete rows created before `before` (all rows when None), `batch` ids per statement; yield each count. The
    energy facts of the same period go with them."""
    rows = RequestLog.objects.all() if before is None else RequestLog.objects.filter(created__lt=before)
    facts = EnergyFact.objects.all() if before is None else EnergyFact.objects.filter(start__lt=before)
    try:
        yield from _by_id_ranges(rows, batch)
        for _ in _by_id_ranges(facts, batch):
            pass
    finally:
        # Stored usage of the deleted period no longer matches its rows: recompute it if asked again.
        usage.forget_before(before)


def _by_id_ranges(rows: QuerySet, batch: int) -> Iterator[int]:
    # Rows are inserted in time order, so the old ones are a run of low ids: walk it by id ranges, each
    # statement short and committed on its own, rather than one long DELETE that locks out the writer.
    low = rows.order_by("id").values_list("id", flat=True).first()
    high = rows.order_by("-id").values_list("id", flat=True).first()
    if low is None or high is None:
        return
    while low <= high:
        with transaction.atomic():
            deleted, _ = rows.filter(id__gte=low, id__lt=low + batch).delete()
        yield deleted
        low += batch
