"""Django admin for the model registry and API keys (request logs: gateway.requestlog.admin)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse

from gateway import ggufinfo
from gateway.models import APIKey, Backend, LLMModel
from gateway.requestlog import admin as _requestlog_admin  # noqa: F401 (registers the request log admin)


def _template_checks(backends: Iterable[Backend]) -> dict[tuple[str, str], ggufinfo.TemplateCheck]:
    """Whether each backend's GGUF has its own chat template (asked together, cached briefly)."""
    return ggufinfo.backend_checks((b.base_url, b.api_key) for b in backends)


class BackendInline(admin.TabularInline):
    model = Backend
    extra = 1
    fields = ["base_url", "weight", "enabled", "max_concurrent", "api_key", "chat_template"]
    readonly_fields = ["chat_template"]

    @admin.display(description="GGUF chat template")
    def chat_template(self, obj: Backend) -> str:
        if obj.pk is None:
            return "-"
        [check] = _template_checks([obj]).values()
        return f"{check.label}: {check.detail}"


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = ["model_id", "kind", "prompt_format", "enabled", "backend_count", "chat_template", "max_tokens_cap"]
    list_filter = ["kind", "prompt_format", "enabled"]
    search_fields = ["model_id", "description"]
    inlines = [BackendInline]
    fieldsets = [
        (None, {"fields": ["model_id", "aliases", "kind", "prompt_format", "enabled", "description", "owned_by"]}),
        ("Limits and defaults", {"fields": ["default_params", "max_tokens_cap", "context_length", "request_timeout"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LLMModel]:
        return super().get_queryset(request).prefetch_related("backends")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # Every backend asked at once, so that each row's column reads the cache instead of waiting in turn.
        _template_checks(Backend.objects.filter(enabled=True))
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            _template_checks(obj.backends.all())
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="backends")
    def backend_count(self, obj: LLMModel) -> int:
        return len(obj.backends.all())

    @admin.display(description="GGUF chat template")
    def chat_template(self, obj: LLMModel) -> str:
        """yes / no / unknown over the enabled backends (a base model's GGUF has none: llama-server uses ChatML)."""
        checks = _template_checks(b for b in obj.backends.all() if b.enabled)
        return ", ".join(sorted({check.label for check in checks.values()})) or "-"


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "owner", "created", "last_used", "expires_at", "revoked"]
    list_filter = ["revoked", "scope_logs", "scope_monitoring"]
    search_fields = ["name", "prefix", "owner__username"]
    readonly_fields = ["prefix", "created", "last_used"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke"]
    fieldsets = [
        (None, {"fields": ["name", "owner", "prefix", "created", "last_used", "expires_at", "revoked"]}),
        ("Access", {"fields": ["allowed_models", "scope_logs", "scope_monitoring", "store_previews"]}),
        ("Limits", {"fields": ["requests_per_minute", "tokens_per_minute", "max_concurrent"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None) -> list[str]:
        # Revocation is final: a revoked key's flag cannot be unset.
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "revoked"] if obj is not None and obj.revoked else fields

    def save_model(self, request: HttpRequest, obj: APIKey, form: ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        fields = {f: form.cleaned_data[f] for f in form.cleaned_data if f != "allowed_models"}
        created, plaintext = APIKey.objects.create_key(**fields)
        obj.pk, obj.prefix, obj.hashed_key = created.pk, created.prefix, created.hashed_key
        obj._state.adding = False
        messages.warning(request, f"The new API key is {plaintext} — copy it now: it will not be shown again.")

    @admin.action(description="Revoke selected keys (cannot be undone)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        count = queryset.update(revoked=True)
        self.message_user(request, f"Revoked {count} key(s).")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keys are revoked, not deleted, so that their request logs keep their name.
        return False
