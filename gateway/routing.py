"""Which model a request names, and which of its backends serves it: fewest in flight, weights, cool-off."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings

from gateway import errors
from gateway.dbsync import db_sync
from gateway.models import GENERATING_KINDS, Backend, LLMModel, ModelKind, Supervisor
from gateway.node import link
from gateway.node.identity import backend_node
from gateway.upstream import Target

# What each kind of model serves: the API's endpoints for it.
GENERATION = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages")
ENDPOINTS = {ModelKind.CHAT: GENERATION, ModelKind.VISION: GENERATION, ModelKind.EMBEDDING: ("/v1/embeddings",),
             ModelKind.RERANK: ("/v1/rerank",)}  # fmt: skip
TRANSCRIPTIONS = "/v1/audio/transcriptions"  # a generating model's too, when it accepts audio
CAPABILITIES = ("vision", "audio")  # the inputs a model may take besides text


@dataclass
class BackendInfo:
    id: int
    target: Target  # a managed backend's URL is only known once its supervisor grants it (gateway.lifecycle)
    weight: int
    max_concurrent: int
    managed: bool = False
    node: str = ""  # the node it runs on (gateway.node.identity.backend_node), if known
    supervisor: str = ""  # how to reach that node's supervisor (gateway.node.link.address), if it has one


@dataclass
class ModelInfo:
    """A registry entry as the request path needs it, detached from the ORM so it can be cached."""

    id: int
    model_id: str
    kind: str
    audio: bool  # accepts audio (its projector has an audio encoder)
    prompt_format: str
    default_params: dict
    max_tokens_cap: int | None
    context_length: int | None
    request_timeout: float
    owned_by: str
    created: int
    backends: list[BackendInfo] = field(default_factory=list)

    def serves(self) -> list[str]:
        """The API's endpoints this model answers, by its kind and whether it accepts audio."""
        audio = [TRANSCRIPTIONS] if self.audio and self.kind in GENERATING_KINDS else []
        return [*ENDPOINTS.get(self.kind, ()), *audio]

    def capabilities(self) -> list[str]:
        """The inputs it takes besides text (/v1/models shows them)."""
        has = (self.kind == ModelKind.VISION, TRANSCRIPTIONS in self.serves())
        return [name for name, present in zip(CAPABILITIES, has, strict=True) if present]


@dataclass
class _BackendState:
    in_flight: int = 0
    down_until: float = 0.0


_registry: dict[str, ModelInfo] = {}
_registry_loaded = 0.0
_state: dict[int, _BackendState] = {}


def _backend_info(backend: Backend, supervisors: dict[str, str]) -> BackendInfo:
    target = Target(backend.base_url.rstrip("/"), backend.api_key)
    node = backend_node(backend.node, backend.base_url)
    return BackendInfo(
        backend.id, target, backend.weight, backend.max_concurrent, backend.managed, node, supervisors.get(node, "")
    )


def _load_registry() -> dict[str, ModelInfo]:
    entries: dict[str, ModelInfo] = {}
    supervisors = {s.node: link.address_of(s) for s in Supervisor.objects.all()}
    for model in LLMModel.objects.enabled().prefetch_related("backends"):
        info = ModelInfo(
            id=model.id,
            model_id=model.model_id,
            kind=model.kind,
            audio=model.audio,
            prompt_format=model.prompt_format,
            default_params=dict(model.default_params or {}),
            max_tokens_cap=model.max_tokens_cap,
            context_length=model.context_length,
            request_timeout=model.request_timeout,
            owned_by=model.owned_by,
            created=int(model.created.timestamp()),
            backends=[_backend_info(b, supervisors) for b in model.backends.all() if b.enabled],
        )
        for name in [model.model_id, *(model.aliases or [])]:
            entries.setdefault(name, info)
    return entries


async def registry() -> dict[str, ModelInfo]:
    """Enabled models by id and alias, reloaded at most every REGISTRY_CACHE_SECONDS."""
    global _registry, _registry_loaded
    if time.monotonic() - _registry_loaded > settings.REGISTRY_CACHE_SECONDS:
        _registry = await db_sync(_load_registry)()
        _registry_loaded = time.monotonic()
    return _registry


async def resolve(model_id: object, allowed_ids: frozenset[int]) -> ModelInfo:
    if not isinstance(model_id, str) or not model_id:
        raise errors.invalid("you must provide a model parameter", param="model", code="missing_model")
    models = await registry()
    info = models.get(model_id)
    if info is None:
        raise errors.not_found(f"The model `{model_id}` does not exist or is not enabled.")
    if allowed_ids and info.id not in allowed_ids:
        raise errors.forbidden(f"This API key may not use the model `{model_id}`.")
    return info


def require(info: ModelInfo, endpoint: str) -> None:
    """Refuse (400) a request for a model that does not serve `endpoint`, saying what it serves instead."""
    served = info.serves()
    if endpoint not in served:
        kind = info.kind + (", accepts audio" if TRANSCRIPTIONS in served else "")
        raise errors.invalid(
            f"The model `{info.model_id}` ({kind}) serves {', '.join(served)}, not {endpoint}", param="model"
        )


def candidates(info: ModelInfo, preferred: int | None = None) -> list[BackendInfo]:
    """Backends to try, in order: out of cool-off and with room, least loaded for their weight first; the
    `preferred` one (which holds the start of the request's conversation: gateway.affinity) first unless it is
    busier by a whole request than the least loaded."""
    now = time.monotonic()
    ready: list[tuple[float, BackendInfo]] = []
    for backend in info.backends:
        state = _state.setdefault(backend.id, _BackendState())
        if state.down_until <= now and (not backend.max_concurrent or state.in_flight < backend.max_concurrent):
            ready.append((state.in_flight / max(backend.weight, 1), backend))
    if not ready:
        return []
    # Weighted random among the least loaded keeps traffic proportional to weight when every backend is idle.
    least = min(load for load, _ in ready)
    tied = [backend for load, backend in ready if load == least]
    first = random.choices(tied, weights=[max(backend.weight, 1) for backend in tied])[0]
    for load, backend in ready:
        if backend.id == preferred and load < least + 1:
            first = backend
    return [first, *(backend for _, backend in sorted(ready, key=lambda pair: pair[0]) if backend is not first)]


def mark_down(backend: BackendInfo) -> None:
    _state.setdefault(backend.id, _BackendState()).down_until = time.monotonic() + settings.BACKEND_COOLOFF_SECONDS


def is_down(backend_id: int) -> bool:
    return _state.get(backend_id, _BackendState()).down_until > time.monotonic()


def in_flight(backend_id: int) -> int:
    return _state.get(backend_id, _BackendState()).in_flight


@contextmanager
def occupy(backend: BackendInfo) -> Iterator[None]:
    state = _state.setdefault(backend.id, _BackendState())
    state.in_flight += 1
    try:
        yield
    finally:
        state.in_flight -= 1
