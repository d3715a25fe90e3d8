"""Usage aggregates over request logs (requests, errors, tokens, average and p95 latency, energy and tokens per joule,
prompt-cache hits and the prefill time they saved, per hour or day), with closed buckets computed once and stored, so
that a month on millions of rows answers in milliseconds."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Aggregate, Avg, Case, CharField, Count, F, FloatField, Func, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Trunc
from django.utils import timezone

from gateway.models import APIKey, UsageBucket
from gateway.requestlog.models import RequestLog, measured

GROUPS = ("hour", "day")
BY = ("model", "key")
TOTAL = "*"  # `who` of the row that marks a stored bucket as complete
CACHE_SOURCES = ("restored", "live", "none")  # RequestLog.prompt_cache, when the backend said
# Figures that add up across buckets; energy_tokens are the completion tokens of the rows that have an energy;
# read_ms and read_tokens, the prompt reading time and the prompt tokens read of the rows that say both.
CACHE_SUMS = (*(f"cache_{source}" for source in CACHE_SOURCES), "cached_tokens", "read_ms", "read_tokens")
SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "energy_mj", "energy_tokens", *CACHE_SUMS)
FIGURES = (*SUMS, "avg_latency_ms", "p95_latency_ms")
# A bucket is stored once it ended this long ago: a request's row carries its start time, and arrives when it ends
# (its energy facts too, as soon as its node's sampler has read the power over it). What arrives later is `arrived`.
GRACE = timedelta(minutes=10)


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float) -> None:
        super().__init__(expression)
        self.extra["fraction"] = float(fraction)


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont does."""
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _bucket(group: str) -> Any:
    if connection.vendor == "sqlite" and settings.TIME_ZONE == "UTC":
        # SQLite stores UTC text ("2026-11-25 10:42:07.123456"): a prefix is the bucket, and far cheaper than
        # Django's Trunc, which calls back into Python for every row.
        return Func(
            F("created"), Value(1), Value(13 if group == "hour" else 10), function="substr", output_field=CharField()
        )
    return Trunc("created", group, tzinfo=timezone.get_current_timezone())


def _group_key(by: str) -> Any:
    if by == "key":
        return F("api_key_id")
    # Requests that never reached a model (unknown id, bad key) count under the model they asked for.
    return Case(When(model_used="", then=F("model_requested")), default=F("model_used"))


def _as_datetime(bucket: Any) -> datetime:
    if isinstance(bucket, datetime):
        return bucket
    text = bucket if len(bucket) > 10 else bucket + " 00"
    return datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC)


def floor(moment: datetime, group: str) -> datetime:
    """Start of the hour or day (in TIME_ZONE) that `moment` falls in."""
    local = timezone.localtime(moment)
    if group == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return timezone.make_aware(datetime.combine(local.date(), time()))


def next_start(start: datetime, group: str) -> datetime:
    if group == "hour":
        return timezone.localtime(start + timedelta(hours=1))
    return timezone.make_aware(datetime.combine(timezone.localtime(start).date() + timedelta(days=1), time()))


def align(since: datetime, until: datetime, group: str) -> list[datetime]:
    """Starts of the whole buckets covering [since, until)."""
    starts, start = [], floor(since, group)
    while start < until:
        starts.append(start)
        start = next_start(start, group)
    return starts


def usage(
    since: datetime, until: datetime, group: str = "hour", by: str = "model", now: datetime | None = None
) -> list[dict[str, Any]]:
    """One dict per (bucket, model or key) for the whole buckets covering [since, until), oldest first.

    Closed buckets are computed once and kept in UsageBucket; the open ones (within GRACE of now) live each time.
    """
    starts = align(since, until, group)
    if not starts:
        return []
    cutoff = (now or timezone.now()) - GRACE
    closed = [s for s in starts if next_start(s, group) <= cutoff]
    still_open = [s for s in starts if next_start(s, group) > cutoff]
    results = _closed(closed, group, by) if closed else []
    if still_open and group == "day" and connection.vendor == "sqlite":
        for start in still_open:
            results += _open_day(start, by, cutoff)
    elif still_open:
        results += compute(still_open[0], next_start(still_open[-1], group), group, by)
    results.sort(key=lambda r: (r["start"], r["who"]))
    return _present(results, by)


def _open_day(start: datetime, by: str, cutoff: datetime) -> list[dict[str, Any]]:
    """Today on SQLite: sums from its hours (stored or live), p95 from its latencies alone; far cheaper than
    aggregating a whole day's rows on every request."""
    end = next_start(start, "day")
    hours = align(start, end, "hour")
    closed = [h for h in hours if next_start(h, "hour") <= cutoff]
    still_open = [h for h in hours if next_start(h, "hour") > cutoff]
    parts = _closed(closed, "hour", by) if closed else []
    if still_open:
        parts += compute(still_open[0], end, "hour", by, with_p95=False)
    merged: dict[str, dict[str, Any]] = {}
    latency_weight: dict[str, float] = defaultdict(float)
    for part in parts:
        into = merged.setdefault(part["who"], {"start": start, "who": part["who"], **dict.fromkeys(FIGURES, 0)})
        for name in SUMS:
            into[name] += part[name] or 0
        if part["avg_latency_ms"] is not None:
            # Weighted by requests: every finished request has a latency.
            into["avg_latency_ms"] += part["avg_latency_ms"] * part["requests"]
            latency_weight[part["who"]] += part["requests"]
    rows = RequestLog.objects.filter(created__gte=start, created__lt=end)
    p95 = {str(who) if who is not None else "": value for (_, who), value in _p95_in_python(rows, None, by).items()}
    for who, item in merged.items():
        weight = latency_weight.get(who)
        item["avg_latency_ms"] = item["avg_latency_ms"] / weight if weight else None
        item["p95_latency_ms"] = p95.get(who)
    return list(merged.values())


def fill(since: datetime, until: datetime, now: datetime | None = None) -> None:
    """Compute and store every closed bucket in [since, until) not stored yet, so that later requests find them."""
    cutoff = (now or timezone.now()) - GRACE
    for group in GROUPS:
        closed = [s for s in align(since, until, group) if next_start(s, group) <= cutoff]
        for by in BY:
            if closed:
                _closed(closed, group, by, read=False)


def _closed(starts: list[datetime], group: str, by: str, read: bool = True) -> list[dict[str, Any]]:
    buckets = UsageBucket.objects.filter(group=group, by=by, start__gte=starts[0], start__lte=starts[-1])
    done = set(buckets.filter(who=TOTAL).values_list("start", flat=True))
    missing = [s for s in starts if s not in done]
    fresh: list[dict[str, Any]] = []
    if missing:
        wanted = set(missing)
        fresh = [r for r in compute(missing[0], next_start(missing[-1], group), group, by) if r["start"] in wanted]
        _store(fresh, missing, group, by)
    if not read:
        return []
    # What was just computed is used as is: if another process stored these buckets first, ours were not saved.
    skip = set(missing)
    stored = [r for r in buckets.exclude(who=TOTAL).values("start", "who", *FIGURES) if r["start"] not in skip]
    return stored + fresh


def _store(results: list[dict[str, Any]], starts: list[datetime], group: str, by: str) -> None:
    rows = [UsageBucket(group=group, by=by, **r) for r in results]
    totals: dict[datetime, dict[str, float]] = {s: dict.fromkeys(SUMS, 0) for s in starts}
    for r in results:
        for name in SUMS:
            totals[r["start"]][name] += r[name] or 0
    rows += [UsageBucket(group=group, by=by, start=s, who=TOTAL, **t) for s, t in totals.items()]
    try:
        with transaction.atomic():
            UsageBucket.objects.bulk_create(rows, batch_size=500)
    except IntegrityError:
        pass  # another process stored the same buckets meanwhile; they hold the same figures


def compute(since: datetime, until: datetime, group: str, by: str, with_p95: bool = True) -> list[dict[str, Any]]:
    """Figures per (bucket start, who) straight from RequestLog rows in [since, until), with their energy facts."""
    rows = RequestLog.objects.filter(created__gte=since, created__lt=until)
    grouped = rows.with_energy().annotate(bucket=_bucket(group), group_key=_group_key(by)).values("bucket", "group_key")
    aggregates: dict[str, Any] = {
        # The node's sampler writes a request's energy once the request has ended; rows without any count for none.
        "energy_mj": Sum("energy_mj"),
        "energy_tokens": Sum("completion_tokens", filter=Q(measured())),
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status__gte=400)),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        **cache_aggregates(),
        "avg_latency_ms": Avg("latency_ms"),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates["p95_latency_ms"] = PercentileCont("latency_ms", 0.95)
    # Under names of their own: one named after a column would stand for that column in the aggregates after it.
    results = list(grouped.annotate(**{f"total_{name}": a for name, a in aggregates.items()}).order_by())
    p95 = _p95_in_python(rows, group, by) if with_p95 and not postgres else {}
    return [
        {
            "start": _as_datetime(r["bucket"]),
            "who": "" if r["group_key"] is None else str(r["group_key"]),
            **{name: r[f"total_{name}"] or 0 for name in SUMS},
            "avg_latency_ms": r["total_avg_latency_ms"],
            "p95_latency_ms": r["total_p95_latency_ms"] if postgres else p95.get((r["bucket"], r["group_key"])),
        }
        for r in results
    ]


def cache_aggregates() -> dict[str, Aggregate]:
    """The prompt-cache sums of a group of rows, for `prompt_cache` to turn into rates."""
    # Only rows that say both how long the prompt took and how much of it was read price a token read.
    reading = Q(prompt_ms__isnull=False, prompt_tokens__gt=F("cached_tokens"))
    return {
        **{f"cache_{source}": Count("id", filter=Q(prompt_cache=source)) for source in CACHE_SOURCES},
        "cached_tokens": Sum("cached_tokens"),
        "read_ms": Sum("prompt_ms", filter=reading),
        "read_tokens": Sum(F("prompt_tokens") - F("cached_tokens"), filter=reading),
    }


def prompt_cache(figures: dict[str, Any]) -> dict[str, Any]:
    """A bucket's prompt-cache block from its sums: requests by source, the hit rate over the requests whose source
    is known, the cached tokens, and the prefill time they saved, priced at the bucket's own reading time per token
    read (None when no request said it)."""
    counts = {source: figures[f"cache_{source}"] or 0 for source in CACHE_SOURCES}
    known = sum(counts.values())
    cached = figures["cached_tokens"] or 0
    per_token = figures["read_ms"] / figures["read_tokens"] if figures["read_tokens"] else None
    return {
        **counts,
        "hit_rate": round((counts["restored"] + counts["live"]) / known, 4) if known else None,
        "cached_tokens": cached,
        "saved_ms": None if per_token is None else round(cached * per_token, 1),
    }


def _p95_in_python(rows: QuerySet, group: str | None, by: str) -> dict[tuple[Any, Any], float | None]:
    """p95 latency per (bucket, who) of `rows`, in one pass; with `group` None, per ("", who)."""
    values = rows.filter(latency_ms__isnull=False).annotate(
        bucket=_bucket(group) if group else Value("", output_field=CharField()), group_key=_group_key(by)
    )
    values = values.values_list("bucket", "group_key", "latency_ms")
    # Through the cursor: the ORM's per-row conversions cost more than the query over tens of thousands of rows.
    sql, params = values.order_by().query.sql_with_params()
    latencies: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for bucket, who, latency in cursor.fetchall():
            latencies[(bucket, who)].append(latency)
    return {group_key: percentile(sorted(values), 0.95) for group_key, values in latencies.items()}


def arrived(moments: Iterable[datetime]) -> None:
    """Rows, or energy facts of rows, created at these moments have just been written: the stored buckets they fall
    in are computed again. The one rule for whatever arrives after its bucket may have been stored, whoever wrote it
    (the request log's writer, a node's sampler)."""
    horizon = timezone.now() - GRACE
    forget(moment for moment in moments if moment < horizon)


def forget(moments: Iterable[datetime]) -> None:
    """Drop stored buckets containing these moments, so they are computed again."""
    condition = Q()
    for group, start in {(group, floor(moment, group)) for moment in moments for group in GROUPS}:
        condition |= Q(group=group, start=start)
    if condition:
        UsageBucket.objects.filter(condition).delete()


def forget_before(cutoff: datetime | None = None) -> None:
    """Drop stored buckets that start before `cutoff` (all when None): their rows are being deleted."""
    buckets = UsageBucket.objects.all() if cutoff is None else UsageBucket.objects.filter(start__lt=cutoff)
    buckets.delete()


def energy(energy_mj: float | None, energy_tokens: int | None) -> dict[str, float | None]:
    """A bucket's energy in joules and its completion tokens per joule; both None when no row had an energy (a
    measured request always used some: zero means none was measured)."""
    joules = (energy_mj or 0) / 1000
    if joules <= 0:
        return {"energy_j": None, "tokens_per_joule": None}
    return {"energy_j": round(joules, 3), "tokens_per_joule": round((energy_tokens or 0) / joules, 4)}


def _present(results: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    keys: dict[int, APIKey] = {}
    if by == "key":
        keys = APIKey.objects.only("id", "prefix", "name").in_bulk({int(r["who"]) for r in results if r["who"]})
    data = []
    tz = timezone.get_current_timezone()
    labels: dict[datetime, str] = {}  # many rows share a bucket; timezone lookups are not free
    for r in results:
        if r["start"] not in labels:
            labels[r["start"]] = r["start"].astimezone(tz).isoformat().replace("+00:00", "Z")
        item: dict[str, Any] = {"bucket": labels[r["start"]]}
        if by == "key":
            key_id = int(r["who"]) if r["who"] else None
            key = keys.get(key_id) if key_id else None
            item["key_id"] = key_id
            item["key_prefix"] = key.prefix if key else None
            item["key_name"] = key.name if key else None
        else:
            item["model"] = r["who"]
        for name in ("requests", "errors", "prompt_tokens", "completion_tokens"):
            item[name] = r[name] or 0
        for name in ("avg_latency_ms", "p95_latency_ms"):
            item[name] = None if r[name] is None else round(r[name], 2)
        item.update(energy(r["energy_mj"], r["energy_tokens"]))
        item["prompt_cache"] = prompt_cache(r)
        data.append(item)
    return data
