"""Registering models and their backends (shared by `addmodel` and the local run command)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from gateway.lifecycle import flags
from gateway.models import Backend, LLMModel
from gateway.node.identity import node_name


@transaction.atomic
def register_model(
    model_id: str, backend_urls: list[str], managed: dict[str, Any] | None = None, **fields: object
) -> tuple[LLMModel, bool]:
    """Create or update a model so that it has exactly these backends: external ones at `backend_urls`, and one
    managed by its node's supervisor when `managed` gives its fields (gguf_path, ctx_size, …, node); idempotent.
    FlagError (and nothing written) for `llama_args` the admin form would refuse."""
    if managed is not None:
        flags.parse(managed.get("llama_args", ""))
    model, created = LLMModel.objects.update_or_create(model_id=model_id, defaults=fields)
    urls = [url.rstrip("/") for url in backend_urls]
    model.backends.filter(managed=False).exclude(base_url__in=urls).delete()
    for url in urls:
        Backend.objects.get_or_create(model=model, base_url=url, managed=False)
    if managed is None:
        model.backends.filter(managed=True).delete()
        return model, created
    fields = dict(managed)
    node = fields.pop("node", "") or node_name()
    backend, _ = Backend.objects.update_or_create(model=model, managed=True, node=node, defaults=fields)
    model.backends.filter(managed=True).exclude(pk=backend.pk).delete()
    return model, created
