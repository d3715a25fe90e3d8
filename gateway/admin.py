"""Django admin for the model registry (with managed models' states and load / unload / restart) and API keys
(request logs: gateway.requestlog.admin)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db import models
from django.db.models import Prefetch, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse

from gateway import errors, ggufinfo
from gateway.models import APIKey, Backend, LLMModel, Supervisor
from gateway.node import link as lifecycle
from gateway.requestlog import admin as _requestlog_admin  # noqa: F401 (registers the request log admin)


def _template_checks(backends: Iterable[Backend]) -> dict[tuple[str, str], ggufinfo.TemplateCheck]:
    """Whether each external backend's GGUF has its own chat template (asked together, cached briefly)."""
    return ggufinfo.backend_checks((b.base_url, b.api_key) for b in backends if not b.managed)


def _template_check(backend: Backend) -> ggufinfo.TemplateCheck:
    # A managed backend's GGUF is named in the registry: read it here, no backend to ask.
    if backend.managed:
        return ggufinfo.file_check(backend.gguf_path)
    [check] = _template_checks([backend]).values()
    return check


class BackendInline(admin.StackedInline):
    model = Backend
    extra = 0
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}  # llama-servers speak plain HTTP
    readonly_fields = ["chat_template", "state"]
    fieldsets = [
        (None, {"fields": [("base_url", "enabled"), ("weight", "max_concurrent"), "api_key", "chat_template"]}),
        (
            "Managed: started on demand by the node's supervisor (leave the URL empty)",
            {
                "fields": [
                    ("managed", "node", "state"), "gguf_path", "mmproj_path", ("ctx_size", "parallel", "gpu_layers"),
                    "llama_args", ("cache_ram_mb", "idle_ttl", "pinned"),
                ]
            },
        ),
    ]  # fmt: skip

    @admin.display(description="GGUF chat template")
    def chat_template(self, obj: Backend) -> str:
        if obj.pk is None:
            return "-"
        check = _template_check(obj)
        return f"{check.label}: {check.detail}"

    @admin.display(description="state")
    def state(self, obj: Backend) -> str:
        return _state_text(obj) if obj.pk and obj.managed else "-"


def _state_text(backend: Backend) -> str:
    runtime = getattr(backend, "runtime", None)
    if runtime is None:
        return "stopped"
    memory = runtime.measured_bytes or runtime.estimated_bytes
    text = f"{runtime.state} on {backend.node}" + (f" ({memory // 2**20} MiB)" if memory else "")
    return text + (
        f": {runtime.last_error.splitlines()[0]}" if runtime.state == "failed" and runtime.last_error else ""
    )


def _operate(admin_: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[LLMModel], operation: str) -> None:
    """Ask each selected model's supervisor(s); a load is started, not waited for (the list shows its state)."""
    backends = Backend.objects.filter(model__in=queryset, managed=True).select_related("model")
    addresses = {s.node: lifecycle.address_of(s) for s in Supervisor.objects.all()}
    if not backends:
        admin_.message_user(request, "None of the selected models is managed.", messages.WARNING)
    for backend in backends:
        try:
            if backend.node not in addresses:
                raise lifecycle.unavailable(backend.node, "(no address)", "no supervisor has started on this node")
            async_to_sync(lifecycle.command)(addresses[backend.node], operation, backend.id, False)
        except errors.APIError as exc:
            admin_.message_user(request, f"Cannot {operation} {backend.model.model_id}: {exc.message}", messages.ERROR)
        else:
            admin_.message_user(request, f"Asked node {backend.node} to {operation} {backend.model.model_id}.")


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = ["model_id", "kind", "audio", "prompt_format", "enabled", "backend_count", "managed_state",
                    "chat_template", "max_tokens_cap"]  # fmt: skip
    list_filter = ["kind", "audio", "prompt_format", "enabled"]
    search_fields = ["model_id", "description"]
    inlines = [BackendInline]
    actions = ["load", "unload", "restart"]
    fieldsets = [
        (None, {"fields": ["model_id", "aliases", ("kind", "audio"), "prompt_format", "enabled", "description",
                           "owned_by"]}),
        ("Limits and defaults", {"fields": ["default_params", "max_tokens_cap", "context_length", "request_timeout"]}),
    ]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[LLMModel]:
        with_state = Prefetch("backends", Backend.objects.select_related("runtime"))
        return super().get_queryset(request).prefetch_related(with_state)

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

    @admin.display(description="managed state")
    def managed_state(self, obj: LLMModel) -> str:
        return "; ".join(_state_text(b) for b in obj.backends.all() if b.managed) or "-"

    @admin.display(description="GGUF chat template")
    def chat_template(self, obj: LLMModel) -> str:
        """yes / no / unknown over the enabled backends (a base model's GGUF has none: llama-server uses ChatML)."""
        checks = [_template_check(b) for b in obj.backends.all() if b.enabled]
        return ", ".join(sorted({check.label for check in checks})) or "-"

    @admin.action(description="Load selected managed models")
    def load(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        _operate(self, request, queryset, "load")

    @admin.action(description="Unload selected managed models (refused while they serve requests)")
    def unload(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        _operate(self, request, queryset, "unload")

    @admin.action(description="Restart selected managed models (applies edited flags)")
    def restart(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        _operate(self, request, queryset, "restart")


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "owner", "created", "last_used", "expires_at", "revoked"]
    list_filter = ["revoked", "scope_logs", "scope_monitoring", "scope_models"]
    search_fields = ["name", "prefix", "owner__username"]
    readonly_fields = ["prefix", "created", "last_used"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke"]
    fieldsets = [
        (None, {"fields": ["name", "owner", "prefix", "created", "last_used", "expires_at", "revoked"]}),
        ("Access", {"fields": ["allowed_models", "scope_logs", "scope_monitoring", "scope_models", "store_previews"]}),
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
