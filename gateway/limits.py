"""Per-key limits (requests/minute, tokens/minute, requests in flight) that hold across worker processes.

With REDIS_URL they live in Redis; without it, in the database. Keys without limits cost nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from gateway import errors
from gateway.dbsync import db_sync
from gateway.models import APIKey, InFlight, RateWindow

_redis_clients: dict[asyncio.AbstractEventLoop, object] = {}


@dataclass
class Lease:
    key: APIKey
    request_id: str
    minute: int


def _seconds_to_next_minute() -> int:
    return 60 - int(time.time()) % 60


def _redis():  # type: ignore[no-untyped-def]
    import redis.asyncio

    loop = asyncio.get_running_loop()
    if loop not in _redis_clients:
        _redis_clients[loop] = redis.asyncio.from_url(settings.REDIS_URL)
    return _redis_clients[loop]


def _has_limits(key: APIKey) -> bool:
    return bool(key.requests_per_minute or key.tokens_per_minute or key.max_concurrent)


def _reject(what: str, limit: int, retry_after: int) -> errors.APIError:
    return errors.rate_limited(f"Rate limit reached for this API key: {limit} {what}.", max(retry_after, 1))


# --- Redis ---


async def _admit_redis(key: APIKey, request_id: str, minute: int, expires: float) -> None:
    client = _redis()
    base = f"jg:{key.pk}:{minute}"
    if key.requests_per_minute:
        count = await client.incr(f"{base}:r")
        await client.expire(f"{base}:r", 120)
        if count > key.requests_per_minute:
            await client.decr(f"{base}:r")
            raise _reject("requests per minute", key.requests_per_minute, _seconds_to_next_minute())
    if key.tokens_per_minute:
        used = int(await client.get(f"{base}:t") or 0)
        if used >= key.tokens_per_minute:
            raise _reject("tokens per minute", key.tokens_per_minute, _seconds_to_next_minute())
    if key.max_concurrent:
        flight = f"jg:{key.pk}:inflight"
        now = time.time()
        # Add first, then count: two processes racing for the last place cannot both win.
        async with client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(flight, "-inf", now)
            pipe.zadd(flight, {request_id: expires})
            pipe.zcard(flight)
            _, _, count = await pipe.execute()
        if count > key.max_concurrent:
            await client.zrem(flight, request_id)
            raise _reject("requests in flight", key.max_concurrent, 1)


async def _release_redis(lease: Lease, tokens: int) -> None:
    client = _redis()
    if lease.key.tokens_per_minute and tokens:
        name = f"jg:{lease.key.pk}:{lease.minute}:t"
        await client.incrby(name, tokens)
        await client.expire(name, 120)
    if lease.key.max_concurrent:
        await client.zrem(f"jg:{lease.key.pk}:inflight", lease.request_id)


# --- Database ---


def _admit_db(key: APIKey, request_id: str, minute: int, expires: float) -> None:
    if key.requests_per_minute or key.tokens_per_minute:
        with contextlib.suppress(IntegrityError):  # another process created it first
            _, created = RateWindow.objects.get_or_create(api_key=key, minute=minute)
            if created:  # a new minute: the key's older windows will not be read again
                RateWindow.objects.filter(api_key=key, minute__lt=minute - 1).delete()
        window = RateWindow.objects.filter(api_key=key, minute=minute)
        if key.requests_per_minute:
            with transaction.atomic():
                window.update(requests=F("requests") + 1)
                if window.values_list("requests", flat=True).get() > key.requests_per_minute:
                    window.update(requests=F("requests") - 1)
                    raise _reject("requests per minute", key.requests_per_minute, _seconds_to_next_minute())
        if key.tokens_per_minute and window.values_list("tokens", flat=True).get() >= key.tokens_per_minute:
            raise _reject("tokens per minute", key.tokens_per_minute, _seconds_to_next_minute())
    if key.max_concurrent:
        now = timezone.now()
        with transaction.atomic():
            InFlight.objects.filter(api_key=key, expires__lt=now).delete()
            InFlight.objects.create(
                api_key=key, request_id=request_id, expires=now + timedelta(seconds=expires - time.time())
            )
            if InFlight.objects.filter(api_key=key).count() > key.max_concurrent:
                raise _reject("requests in flight", key.max_concurrent, 1)


def _release_db(lease: Lease, tokens: int) -> None:
    if lease.key.tokens_per_minute and tokens:
        RateWindow.objects.filter(api_key=lease.key, minute=lease.minute).update(tokens=F("tokens") + tokens)
    if lease.key.max_concurrent:
        InFlight.objects.filter(request_id=lease.request_id).delete()


async def admit(key: APIKey, request_id: str, timeout: float) -> Lease | None:
    """Count the request against the key's limits, or raise APIError 429 with Retry-After."""
    if not _has_limits(key):
        return None
    minute = int(time.time()) // 60
    # An in-flight entry outlives a crashed worker by at most the request timeout.
    expires = time.time() + timeout + 60
    if settings.REDIS_URL:
        await _admit_redis(key, request_id, minute, expires)
    else:
        await db_sync(_admit_db)(key, request_id, minute, expires)
    return Lease(key, request_id, minute)


async def release(lease: Lease | None, tokens: int) -> None:
    """End the request: free its in-flight place and count the tokens it used."""
    if lease is None:
        return
    if settings.REDIS_URL:
        await _release_redis(lease, tokens)
    else:
        await db_sync(_release_db)(lease, tokens)
