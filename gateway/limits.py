"""Per-key limits (requests/minute, tokens/minute, requests in flight) that hold across worker processes.

With REDIS_URL they live in Redis; without it, in the database. Keys without limits cost nothing here.

Redis is a helper, not a point of failure: while it is unreachable, each process enforces the limits with its own
counts (`_LocalCounts`, kept all along for its limited keys) and tries Redis again once a second; when it answers,
the requests and tokens the process counted alone this minute are added to Redis's counters, and the in-flight
entries of Redis-admitted requests that ended meanwhile are removed. A key may so get up to its limits once per
process while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from gateway import errors, metrics
from gateway.dbsync import db_sync
from gateway.models import APIKey, InFlight, RateWindow
from gateway.outage import COMMAND_TIMEOUT, RedisOutage, client_options

logger = logging.getLogger(__name__)

_redis_clients: dict[asyncio.AbstractEventLoop, object] = {}
_outage = RedisOutage("Limits", "each process counts them alone until it is back", logger)
WINDOW_TTL = 120  # seconds a minute's Redis counters are kept: read during their minute only


@dataclass
class Lease:
    key: APIKey
    request_id: str
    minute: int
    expires: float  # time.time() after which its in-flight entry no longer counts (a crashed worker's)
    store: Literal["redis", "local", "database"]  # who admitted it: its in-flight place is given back there


def _seconds_to_next_minute() -> int:
    return 60 - int(time.time()) % 60


def _redis():  # type: ignore[no-untyped-def]
    import redis.asyncio

    loop = asyncio.get_running_loop()
    if loop not in _redis_clients:
        _redis_clients[loop] = redis.asyncio.from_url(
            settings.REDIS_URL, socket_timeout=COMMAND_TIMEOUT, **client_options()
        )
    return _redis_clients[loop]


def _has_limits(key: APIKey) -> bool:
    return bool(key.requests_per_minute or key.tokens_per_minute or key.max_concurrent)


def _reject(what: str, limit: int, retry_after: int) -> errors.APIError:
    return errors.rate_limited(f"Rate limit reached for this API key: {limit} {what}.", max(retry_after, 1))


def status() -> dict[str, object]:
    """Where the limits are counted, as this process sees it (no Redis call): for /health."""
    if not settings.REDIS_URL:
        return {"store": "database", "degraded": False, "since": None}
    return {"store": "redis", **_outage.status()}


# --- Redis ---


def _window_name(key_id: int, minute: int) -> str:
    return f"jg:{key_id}:{minute}"


def _flight_name(key_id: int) -> str:
    return f"jg:{key_id}:inflight"


async def _admit_redis(key: APIKey, request_id: str, minute: int, expires: float) -> None:
    client = _redis()
    base = _window_name(key.pk, minute)
    if key.requests_per_minute:
        count = await client.incr(f"{base}:r")
        await client.expire(f"{base}:r", WINDOW_TTL)
        if count > key.requests_per_minute:
            await client.decr(f"{base}:r")
            raise _reject("requests per minute", key.requests_per_minute, _seconds_to_next_minute())
    if key.tokens_per_minute:
        used = int(await client.get(f"{base}:t") or 0)
        if used >= key.tokens_per_minute:
            raise _reject("tokens per minute", key.tokens_per_minute, _seconds_to_next_minute())
    if key.max_concurrent:
        flight = _flight_name(key.pk)
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
    async with _redis().pipeline(transaction=False) as pipe:
        if lease.key.tokens_per_minute and tokens:
            name = f"{_window_name(lease.key.pk, lease.minute)}:t"
            pipe.incrby(name, tokens)
            pipe.expire(name, WINDOW_TTL)
        if lease.key.max_concurrent:
            # Even for a lease admitted here: Redis may have taken the entry of an admission whose answer was lost.
            pipe.zrem(_flight_name(lease.key.pk), lease.request_id)
        await pipe.execute()


async def _catch_up() -> None:
    """Redis answers again: add what this process counted alone this minute to its counters and remove the entries
    of its requests that ended meanwhile, then end the outage. What is counted here during the round trip is owed
    too: repeat until nothing is (the first round, a PING at least, shows that Redis answers)."""
    owed = _local.take_owed()
    while True:
        try:
            async with _redis().pipeline(transaction=False) as pipe:
                for key_id, (requests, tokens) in owed.counts.items():
                    base = _window_name(key_id, owed.minute)
                    for suffix, amount in (("r", requests), ("t", tokens)):
                        if amount:
                            pipe.incrby(f"{base}:{suffix}", amount)
                            pipe.expire(f"{base}:{suffix}", WINDOW_TTL)
                for key_id, request_id in owed.unreleased:
                    pipe.zrem(_flight_name(key_id), request_id)
                pipe.ping()
                await pipe.execute()
        except BaseException:
            _local.give_back(owed)
            raise
        owed = _local.take_owed()
        if not owed:
            break
    _outage.ended()


async def _in_redis(work: Callable[[], Awaitable[None]]) -> bool:
    """Do `work` in Redis, having it catch up first after an outage; False when Redis is unreachable (or was, less
    than a second ago): the caller counts in this process instead. Every call is bounded by the client's timeouts."""

    async def caught_up_first() -> None:
        if _outage.degraded:
            await _catch_up()
        await work()

    return await _outage.attempt(caught_up_first, timeout=None)


# --- This process's own counts ---


@dataclass
class _Window:
    """A key's minute, as this process counted it; `owed_*`: counted here only, not in Redis yet."""

    requests: int = 0
    tokens: int = 0
    owed_requests: int = 0
    owed_tokens: int = 0


@dataclass
class _Owed:
    minute: int
    counts: dict[int, tuple[int, int]] = field(default_factory=dict)  # key id -> requests, tokens
    unreleased: dict[tuple[int, str], float] = field(default_factory=dict)  # (key id, request id) -> expires

    def __bool__(self) -> bool:
        return bool(self.counts or self.unreleased)


class _LocalCounts:
    """This process's limited requests, whichever store admitted them: the limits it enforces while Redis is
    unreachable, with the same semantics, and what it owes Redis once it is back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one process may serve from several event loops (tests, async_to_sync)
        self.windows: dict[tuple[int, int], _Window] = {}  # (key id, minute) -> counts
        self.flights: dict[int, dict[str, float]] = {}  # key id -> request id -> expires
        # Redis's in-flight entries of requests that ended while it was unreachable: removed when it is back.
        self.unreleased: dict[tuple[int, str], float] = {}

    def window(self, key_id: int, minute: int) -> _Window:
        found = self.windows.get((key_id, minute))
        if found is None:
            # A new minute: windows before the previous one are not read again.
            current = int(time.time()) // 60
            for old in [name for name in self.windows if name[1] < current - 1]:
                del self.windows[old]
            found = self.windows[(key_id, minute)] = _Window()
        return found

    def flight(self, key_id: int) -> dict[str, float]:
        flight = self.flights.setdefault(key_id, {})
        now = time.time()
        for request_id in [r for r, expires in flight.items() if expires < now]:
            del flight[request_id]
        return flight

    def admit(self, key: APIKey, request_id: str, minute: int, expires: float) -> None:
        """Admit on this process's counts alone, as `_admit_redis` does on Redis's, or raise APIError 429."""
        with self.lock:
            window = self.window(key.pk, minute)
            if key.requests_per_minute:
                if window.requests >= key.requests_per_minute:
                    raise _reject("requests per minute", key.requests_per_minute, _seconds_to_next_minute())
                window.requests += 1
                window.owed_requests += 1
            if key.tokens_per_minute and window.tokens >= key.tokens_per_minute:
                raise _reject("tokens per minute", key.tokens_per_minute, _seconds_to_next_minute())
            if key.max_concurrent:
                flight = self.flight(key.pk)
                if len(flight) >= key.max_concurrent:
                    raise _reject("requests in flight", key.max_concurrent, 1)
                flight[request_id] = expires

    def admitted(self, lease: Lease) -> None:
        """Redis admitted the request: count it here too, for an outage that starts before it ends."""
        key = lease.key
        with self.lock:
            if key.requests_per_minute:
                self.window(key.pk, lease.minute).requests += 1
            if key.max_concurrent:
                self.flight(key.pk)[lease.request_id] = lease.expires

    def release(self, lease: Lease, tokens: int, in_redis: bool) -> None:
        """The request ended: its tokens count here, its place here is free. Unless Redis took them (`in_redis`),
        its tokens are owed to Redis, and so is the removal of the in-flight entry Redis gave it."""
        key = lease.key
        with self.lock:
            if key.tokens_per_minute and tokens:
                window = self.window(key.pk, lease.minute)
                window.tokens += tokens
                if not in_redis:
                    window.owed_tokens += tokens
            if key.max_concurrent:
                flight = self.flights.get(key.pk, {})
                flight.pop(lease.request_id, None)
                if not flight:
                    self.flights.pop(key.pk, None)
                if not in_redis and lease.store == "redis":
                    self.unreleased[(key.pk, lease.request_id)] = lease.expires

    def take_owed(self) -> _Owed:
        """What Redis is owed for the current minute (older minutes are not read again: forgotten), now cleared."""
        owed = _Owed(int(time.time()) // 60)
        now = time.time()
        with self.lock:
            for (key_id, minute), window in self.windows.items():
                if minute == owed.minute and (window.owed_requests or window.owed_tokens):
                    owed.counts[key_id] = (window.owed_requests, window.owed_tokens)
                window.owed_requests = window.owed_tokens = 0
            # An entry past its expiry no longer counts in Redis either.
            owed.unreleased = {entry: expires for entry, expires in self.unreleased.items() if expires >= now}
            self.unreleased.clear()
        return owed

    def give_back(self, owed: _Owed) -> None:
        """Redis did not take what `take_owed` gave: owed again."""
        with self.lock:
            for key_id, (requests, tokens) in owed.counts.items():
                window = self.window(key_id, owed.minute)
                window.owed_requests += requests
                window.owed_tokens += tokens
            self.unreleased.update(owed.unreleased)


_local = _LocalCounts()


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
    if not settings.REDIS_URL:
        await db_sync(_admit_db)(key, request_id, minute, expires)
        return Lease(key, request_id, minute, expires, "database")
    if await _in_redis(functools.partial(_admit_redis, key, request_id, minute, expires)):
        lease = Lease(key, request_id, minute, expires, "redis")
        _local.admitted(lease)
        return lease
    _local.admit(key, request_id, minute, expires)
    metrics.count_limits_fallback()
    return Lease(key, request_id, minute, expires, "local")


async def release(lease: Lease | None, tokens: int) -> None:
    """End the request: free its in-flight place and count the tokens it used."""
    if lease is None:
        return
    if lease.store == "database":
        await db_sync(_release_db)(lease, tokens)
        return
    in_redis = await _in_redis(functools.partial(_release_redis, lease, tokens))
    _local.release(lease, tokens, in_redis)
