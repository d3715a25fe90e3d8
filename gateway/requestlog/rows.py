"""A record as a RequestLog row (clipped, redacted), and a row as the JSON the logs API and the live tail show."""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone


@dataclass
class Fields:
    """What a request's row is made of (gateway.requestlog.record.RequestRecord fills it in over the request's life)."""

    endpoint: str
    method: str = "POST"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.perf_counter)
    api_key_id: int | None = None
    key_name: str = ""
    owner_id: int | None = None
    model_requested: str = ""
    model_used: str = ""
    backend: str = ""
    status: int = 0
    error_type: str = ""
    error_code: str = ""
    error_message: str = ""
    stream: bool = False
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cold_start_ms: float | None = None  # waited for a managed model to load (gateway.lifecycle)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None
    prompt_cache: str = ""  # restored, live, none (gateway.lifecycle.kvcache)
    cached_tokens: int | None = None
    prompt_ms: float | None = None
    client_ip: str | None = None
    user_agent: str = ""
    client_gone: bool = False
    prompt_preview: str = ""
    completion_preview: str = ""
    store_previews: bool = False
    closed: bool = False


# Fields of a row that the logs API, the live tail and CSV exports show; the energy ones are its request's energy facts
# (gateway.requestlog.models), the others its columns.
ENERGY_FIELDS = ("energy_mj", "energy_net_mj")
PUBLIC_FIELDS = (
    "id",
    "request_id",
    "created",
    "api_key_id",
    "key_name",
    "endpoint",
    "method",
    "model_requested",
    "model_used",
    "backend",
    "status",
    "error_type",
    "error_code",
    "error_message",
    "stream",
    "latency_ms",
    "ttft_ms",
    "cold_start_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_second",
    "prompt_cache",
    "cached_tokens",
    "prompt_ms",
    "energy_mj",
    "energy_net_mj",
    "client_ip",
    "user_agent",
    "client_gone",
    "prompt_preview",
    "completion_preview",
)
COLUMNS = tuple(name for name in PUBLIC_FIELDS if name not in ENERGY_FIELDS)


_SECRET_PATTERNS = [
    # Our keys (sk-jg-<prefix>.<secret>) and OpenAI-style ones a client may have sent by mistake.
    (re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9._\-]{5,}"), "sk-[redacted]"),
    (re.compile(r"(?i)\bbearer\s+[^\s,;\"']+"), "Bearer [redacted]"),
    (re.compile(r"(?i)\b(authorization|api[_-]?key|x-api-key)(\"?\s*[:=]\s*\"?)[^\s,;\"']+"), r"\1\2[redacted]"),
]


def redact(text: str) -> str:
    """`text` with anything shaped like an API key or an Authorization header value blanked out."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def preview(text: str | None) -> str:
    """`text` cut to LOG_PREVIEW_CHARS, for the optional prompt/completion previews."""
    if not text:
        return ""
    limit = settings.LOG_PREVIEW_CHARS
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def to_row(record: Fields) -> Any:
    """The RequestLog for a record: text clipped to its column, secrets redacted, previews only when allowed."""
    from gateway.models import RequestLog

    previews = record.store_previews
    ip = record.client_ip if record.client_ip and _is_ip(record.client_ip) else None
    return RequestLog(
        request_id=record.request_id[:32],
        created=record.created,
        api_key_id=record.api_key_id,
        key_name=_clip(record.key_name, 100),
        owner_id=record.owner_id,
        endpoint=_clip(record.endpoint, 100),
        method=record.method[:10],
        model_requested=_clip(record.model_requested, 200),
        model_used=_clip(record.model_used, 200),
        backend=_clip(record.backend, 300),
        status=max(0, min(int(record.status), 32767)),
        error_type=_clip(record.error_type, 100),
        error_code=_clip(record.error_code, 100),
        error_message=_clip(redact(record.error_message), 2000),
        stream=record.stream,
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        cold_start_ms=record.cold_start_ms,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        tokens_per_second=record.tokens_per_second,
        prompt_cache=record.prompt_cache,
        cached_tokens=record.cached_tokens,
        prompt_ms=record.prompt_ms,
        client_ip=ip,
        user_agent=_clip(redact(record.user_agent), 300),
        client_gone=record.client_gone,
        prompt_preview=redact(preview(record.prompt_preview)) if previews else "",
        completion_preview=redact(preview(record.completion_preview)) if previews else "",
    )


def entry(row: Any) -> dict[str, Any]:
    """The public fields of a RequestLog (instance or `.values()` dict), JSON-ready. A row just written, as the live
    tail shows it, has no energy: its facts are joined when rows are read."""
    data = {name: row.get(name) if isinstance(row, dict) else getattr(row, name, None) for name in PUBLIC_FIELDS}
    data["created"] = data["created"].isoformat().replace("+00:00", "Z")
    return data
