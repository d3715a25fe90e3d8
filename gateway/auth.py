"""Who may call: API key authentication (for the async API views, and as DRF classes for the staff/read APIs), and
who may use the dashboard (active staff, or active users granted `dashboard.view_dashboard`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from gateway import crypto, errors
from gateway.dbsync import db_sync
from gateway.models import APIKey

LAST_USED_EVERY = 60  # seconds; `last_used` is a hint, not worth a write on every request
DASHBOARD_PERMISSION = "dashboard.view_dashboard"


@dataclass
class _CacheEntry:
    key: APIKey | None
    allowed_model_ids: frozenset[int]
    fetched: float


_cache: dict[str, _CacheEntry] = {}
_background: set[asyncio.Task] = set()


def authorization(headers: Mapping[str, str]) -> str:
    """The request's credentials as an Authorization header: its own, or the key in X-Api-Key (what Anthropic's SDKs
    and Claude Code send). Both, naming different keys, are refused: which one the client meant is anyone's guess."""
    value, key = headers.get("Authorization", ""), headers.get("X-Api-Key", "")
    if value and key and bearer_token(value) != key:
        raise errors.unauthorized("Authorization and x-api-key name different keys: send one.")
    return value or (f"Bearer {key}" if key else "")


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _load(prefix: str) -> _CacheEntry:
    key = APIKey.objects.select_related("owner").filter(prefix=prefix).first()
    allowed = frozenset(key.allowed_models.values_list("id", flat=True)) if key else frozenset()
    return _CacheEntry(key, allowed, time.monotonic())


def _touch(key: APIKey) -> None:
    now = timezone.now()
    APIKey.objects.filter(pk=key.pk).update(last_used=now)
    key.last_used = now


def _should_touch(key: APIKey) -> bool:
    return key.last_used is None or (timezone.now() - key.last_used).total_seconds() > LAST_USED_EVERY


def _check(token: str, entry: _CacheEntry) -> APIKey:
    key = entry.key
    # Compare digests even for unknown prefixes so that timing does not tell which prefixes exist.
    digest = key.hashed_key if key else "0" * 64
    if not crypto.matches(token, digest) or key is None:
        raise errors.unauthorized()
    if key.revoked:
        raise errors.unauthorized("This API key has been revoked.")
    if not key.is_usable():
        raise errors.unauthorized("This API key has expired.")
    key.allowed_model_ids = entry.allowed_model_ids  # type: ignore[attr-defined]
    return key


async def authenticate(authorization: str) -> APIKey:
    """The usable key named by an `Authorization: Bearer …` header, or APIError 401."""
    token = bearer_token(authorization)
    prefix = crypto.split_prefix(token)
    if not prefix:
        raise errors.unauthorized()
    entry = _cache.get(prefix)
    if entry is None or time.monotonic() - entry.fetched > settings.API_KEY_CACHE_SECONDS:
        entry = await db_sync(_load)(prefix)
        _cache[prefix] = entry
    key = _check(token, entry)
    if _should_touch(key):
        task = asyncio.create_task(db_sync(_touch)(key))
        _background.add(task)
        task.add_done_callback(_background.discard)
    return key


def authenticate_sync(authorization: str) -> APIKey:
    token = bearer_token(authorization)
    key = _check(token, _load(crypto.split_prefix(token) or ""))
    if _should_touch(key):
        _touch(key)
    return key


def can_use_dashboard(user: Any) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_staff or user.has_perm(DASHBOARD_PERMISSION))


async def acan_use_dashboard(user: Any) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_staff or await user.ahas_perm(DASHBOARD_PERMISSION))


class APIKeyAuthentication(BaseAuthentication):
    """DRF authentication by API key; the key is `request.auth`, the user its owner (or anonymous)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[object, APIKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not bearer_token(header):
            return None
        try:
            key = authenticate_sync(header)
        except errors.APIError as exc:
            raise AuthenticationFailed(exc.message) from None
        return (key.owner or AnonymousUser(), key)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class StaffOrKeyScope(BasePermission):
    """Staff sessions (and dashboard users, whose pages read these APIs), or API keys whose `scope_<name>` flag
    is set; subclasses name the scope."""

    scope = ""

    def has_permission(self, request: Request, view: object) -> bool:
        if isinstance(request.auth, APIKey):
            return bool(getattr(request.auth, f"scope_{self.scope}"))
        return can_use_dashboard(request.user)


class LogsScope(StaffOrKeyScope):
    scope = "logs"


class MonitoringScope(StaffOrKeyScope):
    scope = "monitoring"
