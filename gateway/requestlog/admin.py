"""Django admin for request logs: a read-only list with filters, search, date hierarchy and CSV export; and the
energy facts the nodes' samplers wrote."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from gateway.node.admission import OVERHEATED, POWER_LIMIT
from gateway.node.models import EnergyFact
from gateway.requestlog import usage
from gateway.requestlog.models import RequestLog, measured
from gateway.requestlog.rows import PUBLIC_FIELDS


class StatusClassFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status_class"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("2", "2xx success"), ("4", "4xx client error"), ("5", "5xx server error")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
        if self.value() in {"2", "4", "5"}:
            first = int(self.value()) * 100
            return queryset.filter(status__gte=first, status__lt=first + 100)
        return queryset


class ErrorCodeFilter(admin.SimpleListFilter):
    """Error codes: the admission's refusals always, and those of the newest rows. Django's own filter would run a
    DISTINCT over the whole table, which has no index on the code, on every page of the list."""

    title = "error code"
    parameter_name = "error_code"
    ALWAYS = (OVERHEATED, POWER_LIMIT)  # the admission's refusals
    RECENT_ROWS = 10_000

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        newest = RequestLog.objects.order_by("-created").values_list("error_code", flat=True)[: self.RECENT_ROWS]
        seen = set(newest) - {""}
        return [(code, code) for code in (*self.ALWAYS, *sorted(seen - set(self.ALWAYS)))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
        return queryset.filter(error_code=self.value()) if self.value() else queryset


class MeasuredFilter(admin.SimpleListFilter):
    """Whether a row's request has an energy fact (its node's sampler measured it)."""

    title = "energy"
    parameter_name = "measured"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "measured"), ("no", "not measured")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
        if self.value() in {"yes", "no"}:
            return queryset.filter(measured()) if self.value() == "yes" else queryset.exclude(measured())
        return queryset


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(queryset: QuerySet[RequestLog]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(PUBLIC_FIELDS)
    for row in queryset.values_list(*PUBLIC_FIELDS).iterator(chunk_size=2000):
        yield writer.writerow(_csv_safe(value) for value in row)


def _csv_safe(value: Any) -> Any:
    # Cells starting with = + - @ run as formulas in spreadsheets; error messages and previews come from clients.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


@admin.action(description="Export selected rows as CSV")
def export_csv(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[RequestLog]) -> Any:
    response = StreamingHttpResponse(_csv_lines(queryset.order_by("-created", "-id")), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="request-log-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    return response


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = ("created", "endpoint", "status", "model_used", "key_name", "latency_ms", "total_tokens",
                    "energy_j", "client_ip", "stream", "client_gone")  # fmt: skip
    list_filter = (StatusClassFilter, "status", ErrorCodeFilter, MeasuredFilter, "model_used", "api_key", "endpoint",
                   "stream", "created")  # fmt: skip
    search_fields = ("request_id", "model_requested", "model_used", "key_name", "error_message", "client_ip")
    date_hierarchy = "created"
    list_select_related = False
    actions = [export_csv]
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is not worth it
    ordering = ("-created", "-id")

    @admin.display(description="tokens")
    def total_tokens(self, row: RequestLog) -> int | None:
        if row.prompt_tokens is None and row.completion_tokens is None:
            return None
        return (row.prompt_tokens or 0) + (row.completion_tokens or 0)

    def get_queryset(self, request: HttpRequest) -> QuerySet[RequestLog]:
        # Each row's energy facts, looked up in the list's own query (and the CSV export's).
        return super().get_queryset(request).with_energy()  # type: ignore[attr-defined]

    @admin.display(description="energy (J)", ordering="energy_mj")
    def energy_j(self, row: RequestLog) -> float | None:
        return None if row.energy_mj is None else round(row.energy_mj / 1000, 3)  # type: ignore[attr-defined]

    def get_readonly_fields(self, request: HttpRequest, obj: RequestLog | None = None) -> list[str]:
        return [*(f.name for f in RequestLog._meta.fields), "energy_j"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    # Deleting stays possible (and is logged by the admin); rows are otherwise pruned by `prunelogs`.
    def delete_model(self, request: HttpRequest, obj: RequestLog) -> None:
        super().delete_model(request, obj)
        usage.forget([obj.created])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RequestLog]) -> None:
        moments = list(queryset.values_list("created", flat=True))
        super().delete_queryset(request, queryset)
        usage.forget(moments)


@admin.register(EnergyFact)
class EnergyFactAdmin(admin.ModelAdmin):
    """Read-only: each lease's energy as its node's sampler wrote it, and how much of the lease its readings measured."""

    list_display = ("start", "request_id", "lease", "node", "model", "gross_mj", "net_mj", "seconds",
                    "measured_seconds", "source")  # fmt: skip
    list_filter = ("node", "model")
    search_fields = ("request_id", "lease")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: EnergyFact | None = None) -> bool:
        return False
