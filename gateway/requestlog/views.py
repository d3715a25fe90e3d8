"""Read side of the request logs: /api/logs, /api/usage and the original service's /api/activity-logs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway import errors, params
from gateway.auth import LogsScope
from gateway.models import APIKey
from gateway.requestlog import retention, usage
from gateway.requestlog.models import RequestLog, energy_by_request
from gateway.requestlog.rows import COLUMNS, entry

MAX_USAGE_BUCKETS = {"hour": 24 * 31, "day": 400}


class LogsAPIView(APIView):
    """Base of the read APIs: staff sessions or keys with the logs scope; errors in OpenAI's shape."""

    permission_classes = [LogsScope]


# --- Query parameters (gateway.params: the views parse them, the OpenAPI document describes them) ---------------

SINCE = params.Time("since", "Rows at or after this time (naive times are in the server's TIME_ZONE).")
UNTIL = params.Time("until", "Rows before this time.", example="2026-11-02T00:00:00Z")
MODEL = params.Param("model", "Model used or asked for.")
KEY = params.Param("key", "API key: its id or its whole prefix.")
STATUS = params.StatusFilter("status", "An HTTP status (404) or a class (5xx).")
ENDPOINT = params.Param("endpoint", "Endpoint path, e.g. /v1/chat/completions.")
LIMIT = params.Integer("limit", "Rows per page.", low=1, high=500, default=50)
CURSOR = params.Param(
    "cursor",
    "Where a page starts: the opaque cursor in the previous page's `next` or `previous` link. Any other value, "
    "base64 or not, is a 400 naming `cursor`.",
    pattern="[A-Za-z0-9+/=]*",
    expects="must be a cursor from a `next` or `previous` link",
)
LOG_FILTERS = (SINCE, UNTIL, MODEL, KEY, STATUS, ENDPOINT)
_KEY_ID = re.compile(r"[0-9]{1,18}")


def filter_logs(request: Request, rows: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
    """Apply the logs API's filters: since, until, model, key, status, endpoint."""
    query = params.read(request.query_params, LOG_FILTERS)
    if query["since"]:
        rows = rows.filter(created__gte=query["since"])
    if query["until"]:
        rows = rows.filter(created__lt=query["until"])
    if model := query["model"]:
        rows = rows.filter(Q(model_used=model) | Q(model_requested=model))
    if key := query["key"]:
        # Resolve to ids first, so the (api_key, created) index serves the query.
        # A whole prefix, as the admin shows it; prefixes are hex, so an all-digit value may also be an id.
        ids = list(APIKey.objects.filter(prefix=key).values_list("id", flat=True))
        if _KEY_ID.fullmatch(key):
            ids.append(int(key))
        rows = rows.filter(api_key_id__in=ids)
    if query["status"]:
        low, high = query["status"]
        rows = rows.filter(status__gte=low, status__lt=high)
    if endpoint := query["endpoint"]:
        rows = rows.filter(endpoint=endpoint)
    return rows


# --- Views -------------------------------------------------------------------------------------------------------


class NewestFirst(CursorPagination):
    ordering = ("-created", "-id")
    cursor_query_param = CURSOR.name

    def get_page_size(self, request: Request) -> int:
        # DRF would quietly fall back to its default for a bad limit; the declaration refuses it.
        return LIMIT.parse(request.query_params)

    def decode_cursor(self, request: Request) -> Any:
        invalid = errors.invalid("Invalid cursor.", param=CURSOR.name)
        CURSOR.parse(request.query_params)  # the documented pattern, then what only a decoding can tell
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise invalid from None
        if cursor is None or cursor.position is None:
            return cursor
        # The position is compared with `created`: only a time, kept within the database's range, may reach it.
        if not re.fullmatch(params.ISO_TIME, cursor.position):
            raise invalid
        return cursor._replace(position=str(params.iso_time(cursor.position)))


class LogList(LogsAPIView, ListAPIView):
    """GET /api/logs: request log rows, newest first, filtered, with cursor pagination."""

    pagination_class = NewestFirst
    parameters = (*LOG_FILTERS, LIMIT, CURSOR)

    def get_queryset(self) -> QuerySet[RequestLog]:
        return filter_logs(self.request, RequestLog.objects.values(*COLUMNS))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        # The page's energy in one more query: joined into the page's own, SQLite would look it up for every row it
        # sorts, not only for the page's.
        energy = energy_by_request(row["request_id"] for row in page)
        return self.get_paginated_response([entry({**row, **energy.get(row["request_id"], {})}) for row in page])


class Usage(LogsAPIView):
    """GET /api/usage?group=hour|day&by=model|key&since=&until=: aggregates per bucket and model or key."""

    parameters = (
        params.Choice("group", "Bucket size.", choices=usage.GROUPS),
        params.Choice("by", "One row per bucket and model, or per bucket and API key.", choices=usage.BY),
        params.Time(
            "since",
            "Start (default: 24 hours, or 30 days by day, before `until`); widened to whole buckets. "
            f"At most {MAX_USAGE_BUCKETS['hour']} hours (by hour) or {MAX_USAGE_BUCKETS['day']} days (by day) "
            "before `until` (default: now), and before it: a 400 naming `since` otherwise.",
        ),
        params.Time("until", "End (default: now); widened to whole buckets.", example="2026-11-02T00:00:00Z"),
    )

    def get(self, request: Request) -> Response:
        query = params.read(request.query_params, self.parameters)
        group, by = query["group"], query["by"]
        until = query["until"] or timezone.now()
        window = timedelta(hours=24) if group == "hour" else timedelta(days=30)
        since = query["since"] or until - min(window, until - params.EARLIEST)
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

    parameters = (params.Integer("limit", "Rows, newest first.", low=1, high=1000, default=100),)

    def get(self, request: Request) -> Response:
        limit = params.read(request.query_params, self.parameters)["limit"]
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
