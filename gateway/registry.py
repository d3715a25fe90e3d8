"""Registering models and their backends (shared by `addmodel` and the local run command)."""

from __future__ import annotations

from django.db import transaction

from gateway.models import Backend, LLMModel


@transaction.atomic
def register_model(model_id: str, backend_urls: list[str], **fields: object) -> tuple[LLMModel, bool]:
    """Create or update a model so that it has exactly these backends; idempotent."""
    model, created = LLMModel.objects.update_or_create(model_id=model_id, defaults=fields)
    urls = [url.rstrip("/") for url in backend_urls]
    model.backends.exclude(base_url__in=urls).delete()
    for url in urls:
        Backend.objects.get_or_create(model=model, base_url=url)
    return model, created
