"""Admin: nodes and samples, read-only (the sampler writes them; people only look)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from monitor.models import IdlePower, Node, Sample


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Node)
class NodeAdmin(ReadOnlyAdmin):
    list_display = ["name", "board_model", "l4t_release", "power_mode", "last_seen"]
    search_fields = ["name", "board_model"]


@admin.register(Sample)
class SampleAdmin(ReadOnlyAdmin):
    list_display = ["time", "node", "cpu_percent", "ram_used", "gpu_percent", "power_mw", "temp_max", "slots_busy"]
    list_filter = ["node"]
    date_hierarchy = "time"
    list_select_related = ["node"]
    # Counting a day of samples at 1 s on every page load is slow on PostgreSQL.
    show_full_result_count = False


@admin.register(IdlePower)
class IdlePowerAdmin(ReadOnlyAdmin):
    list_display = ["node", "power_mode", "mw", "seconds", "updated"]
    list_filter = ["node"]
