"""Read side of the request logs: /api/logs, /api/usage and the original service's /api/activity-logs."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway import errors
from gateway.auth import LogsScope
from gateway.models import APIKey, RequestLog
from gateway.requestlog import retention, usage
from gateway.requestlog.rows import PUBLIC_FIELDS, entry

MAX_USAGE_BUCKETS = {"hour": 24 * 31, "day": 400}


class LogsAPIView(APIView):
    """Base of the read APIs: staff sessions or keys with the logs scope; errors in OpenAI's shape."""

    permission_classes = [LogsScope]


# --- Parsing query parameters ------------------------------------------------------------------------------------

_OFFSET_AFTER_SPACE = re.compile(r" (\d{2}:?\d{2})$")


def parse_time(request: Request, name: str) -> datetime | None:
    """An ISO 8601 date or date-time, or Unix seconds; naive values are in TIME_ZONE."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    # An unencoded "+01:00" arrives as " 01:00".
    raw = _OFFSET_AFTER_SPACE.sub(r"+\1", raw)
    try:
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            return datetime.fromtimestamp(float(raw), tz=timezone.get_current_timezone())
        value = parse_datetime(raw)
        if value is None:
            day = parse_date(raw)
            value = datetime(day.year, day.month, day.day) if day else None
    except (ValueError, OverflowError, OSError):
        value = None
    if value is None:
        raise errors.invalid(f"'{name}' must be an ISO 8601 date or date-time, or Unix seconds.", param=name)
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def parse_choice(request: Request, name: str, choices: tuple[str, ...]) -> str:
    value = request.query_params.get(name, choices[0])
    if value not in choices:
        raise errors.invalid(f"'{name}' must be one of: {', '.join(choices)}.", param=name)
    return value


def parse_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise errors.invalid(f"'{name}' must be an integer from {low} to {high}.", param=name)
    return value


def filter_logs(request: Request, rows: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
    """Apply the logs API's filters: since, until, model, key, status, endpoint."""
    since, until = parse_time(request, "since"), parse_time(request, "until")
    if since:
        rows = rows.filter(created__gte=since)
    if until:
        rows = rows.filter(created__lt=until)
    params = request.query_params
    if model := params.get("model"):
        rows = rows.filter(Q(model_used=model) | Q(model_requested=model))
    if key := params.get("key"):
        # Resolve to ids first, so the (api_key, created) index serves the query.
        # A whole prefix, as the admin shows it; prefixes are hex, so an all-digit value may also be an id.
        ids = list(APIKey.objects.filter(prefix=key).values_list("id", flat=True))
        if key.isdigit():
            ids.append(int(key))
        rows = rows.filter(api_key_id__in=ids)
    if status := params.get("status"):
        if re.fullmatch(r"[1-5]xx", status):
            first = int(status[0]) * 100
            rows = rows.filter(status__gte=first, status__lt=first + 100)
        elif status.isdigit() and 100 <= int(status) <= 599:
            rows = rows.filter(status=int(status))
        else:
            raise errors.invalid("'status' must be an HTTP status (e.g. 404) or a class (e.g. 5xx).", param="status")
    if endpoint := params.get("endpoint"):
        rows = rows.filter(endpoint=endpoint)
    return rows


# --- Views -------------------------------------------------------------------------------------------------------


class NewestFirst(CursorPagination):
    ordering = ("-created", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise errors.invalid("Invalid cursor.", param="cursor") from None


class LogList(LogsAPIView, ListAPIView):
    """GET /api/logs: request log rows, newest first, filtered, with cursor pagination."""

    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[RequestLog]:
        return filter_logs(self.request, RequestLog.objects.values(*PUBLIC_FIELDS))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([entry(row) for row in page])


class Usage(LogsAPIView):
    """GET /api/usage?group=hour|day&by=model|key&since=&until=: aggregates per bucket and model or key."""

    def get(self, request: Request) -> Response:
        group = parse_choice(request, "group", usage.GROUPS)
        by = parse_choice(request, "by", usage.BY)
        until = parse_time(request, "until") or timezone.now()
        since = parse_time(request, "since") or until - (timedelta(hours=24) if group == "hour" else timedelta(days=30))
        if since >= until:
            raise errors.invalid("'since' must be before 'until'.", param="since")
        step = timedelta(hours=1) if group == "hour" else timedelta(days=1)
        if (until - since) / step > MAX_USAGE_BUCKETS[group]:
            raise errors.invalid(f"At most {MAX_USAGE_BUCKETS[group]} {group}s per request.", param="since")
        # Whole buckets only: the range is widened to the hours or days it touches.
        starts = usage.align(since, until, group)
        since, until = starts[0], usage.next_start(starts[-1], group)
        data = usage.usage(since, until, group, by)
        return Response({"object": "usage", "group": group, "by": by, "since": since, "until": until, "data": data})


class ActivityLogs(LogsAPIView):
    """GET /api/activity-logs?limit=N: the newest rows in the original service's field names."""

    def get(self, request: Request) -> Response:
        limit = parse_int(request, "limit", default=100, low=1, high=1000)
        fields = ("created", "method", "endpoint", "model_used", "model_requested", "status", "latency_ms",
                  "client_ip", "prompt_preview")  # fmt: skip
        logs = [
            {
                "timestamp": row["created"].isoformat().replace("+00:00", "Z"),
                "method": row["method"],
                "path": row["endpoint"],
                "model": row["model_used"] or row["model_requested"],
                "status": row["status"],
                "response_time": None if row["latency_ms"] is None else round(row["latency_ms"], 1),
                "client_ip": row["client_ip"],
                "preview": row["prompt_preview"],
            }
            for row in RequestLog.objects.values(*fields)[:limit]
        ]
        return Response({"logs": logs, "count": len(logs)})


class IsStaffSession(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class ActivityLogsClear(LogsAPIView):
    """POST /api/activity-logs/clear: staff only; deletes every row and says so in the admin log."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsStaffSession]

    def post(self, request: Request) -> Response:
        deleted = sum(retention.delete_in_batches())
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(RequestLog),
            object_id=None,
            object_repr=f"{deleted} request log rows",
            action_flag=DELETION,
            change_message=f"Cleared the request log: {deleted} rows deleted (POST /api/activity-logs/clear).",
        )
        return Response({"cleared": deleted})
