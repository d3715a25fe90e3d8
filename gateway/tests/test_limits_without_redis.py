"""While Redis is unreachable, a process enforces the limits with its own counts (and says so, once); when Redis is
back, the requests and tokens it counted alone this minute are added to Redis's counters and the places of requests
that ended meanwhile are freed there. Redis is pointed at a closed port, then at a private live one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway import errors, limits, metrics, outage
from gateway.llama import free_port
from gateway.models import APIKey
from tests.redis_server import PrivateRedis

CLOSED = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's limit state as a new process has it; no request may straddle two minutes."""
    if 60 - time.time() % 60 < 5:
        time.sleep(60 - time.time() % 60 + 0.1)
    monkeypatch.setattr(limits, "_redis_clients", {})
    monkeypatch.setattr(limits, "_local", limits._LocalCounts())
    was = limits._outage
    monkeypatch.setattr(limits, "_outage", outage.RedisOutage(was.name, was.meanwhile, was.logger))
    yield


def use_redis(settings: Any, url: str) -> None:
    settings.REDIS_URL = url
    limits._redis_clients.clear()


async def redis_is_tried_again() -> None:
    await asyncio.sleep(outage.RETRY_EVERY)


def key(key_id: int, **limits_: int) -> APIKey:
    return APIKey(pk=key_id, name=f"key {key_id}", **limits_)


async def admit(api_key: APIKey) -> limits.Lease:
    lease = await limits.admit(api_key, f"req-{time.monotonic_ns()}", timeout=30)
    assert lease is not None
    return lease


async def refused(api_key: APIKey) -> str:
    with pytest.raises(errors.APIError) as refusal:
        await admit(api_key)
    assert refusal.value.status == 429
    return refusal.value.message


def fallbacks() -> float:
    registry = CollectorRegistry()
    metrics.add_to(registry)
    return registry.get_sample_value("jetson_gateway_limits_fallback_total") or 0.0


def window(server: PrivateRedis, key_id: int, kind: str) -> int:
    return int(server.client().get(f"jg:{key_id}:{int(time.time()) // 60}:{kind}") or 0)


async def test_it_counts_requests_in_this_process_while_redis_is_unreachable(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    use_redis(settings, CLOSED)
    before = fallbacks()
    limited = key(1, requests_per_minute=2)
    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        leases = [await admit(limited), await admit(limited)]
        assert "2 requests per minute" in await refused(limited)
    assert [lease.store for lease in leases] == ["local", "local"]
    assert fallbacks() - before == 2
    status = limits.status()
    assert status["store"] == "redis" and status["degraded"] is True and status["since"]
    warnings = [r.getMessage() for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1, "said once, not per request"


async def test_it_holds_requests_in_flight_and_tokens_in_this_process(settings: Any) -> None:
    use_redis(settings, CLOSED)
    limited = key(2, max_concurrent=1, tokens_per_minute=10)
    first = await admit(limited)
    assert "1 requests in flight" in await refused(limited)
    await limits.release(first, 25)  # its place is free, its tokens spent the minute's
    assert "10 tokens per minute" in await refused(limited)


async def test_it_counts_what_redis_admitted_before_the_outage(settings: Any, private_redis: PrivateRedis) -> None:
    use_redis(settings, private_redis.url)
    limited = key(3, requests_per_minute=2)
    assert (await admit(limited)).store == "redis"
    use_redis(settings, CLOSED)
    assert (await admit(limited)).store == "local"
    await refused(limited)  # the request Redis admitted counts here too


async def test_it_adds_what_it_counted_alone_to_redis_when_redis_is_back(
    settings: Any, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    use_redis(settings, CLOSED)
    limited = key(4, requests_per_minute=10, tokens_per_minute=1000)
    first, _ = await admit(limited), await admit(limited)
    await limits.release(first, 30)
    use_redis(settings, private_redis.url)
    await redis_is_tried_again()
    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        assert (await admit(limited)).store == "redis"
    assert window(private_redis, 4, "r") == 3  # two counted here, one by Redis
    assert window(private_redis, 4, "t") == 30
    assert limits.status() == {"store": "redis", "degraded": False, "since": None}
    assert [r.getMessage() for r in caplog.records if "Redis is back" in r.getMessage()]


async def test_it_frees_the_redis_place_of_a_request_that_ended_during_the_outage(
    settings: Any, private_redis: PrivateRedis
) -> None:
    use_redis(settings, private_redis.url)
    limited = key(5, max_concurrent=1)
    running = await admit(limited)
    assert running.store == "redis"
    use_redis(settings, CLOSED)
    await limits.release(running, 0)  # Redis keeps its entry meanwhile
    assert private_redis.client().zcard("jg:5:inflight") == 1
    use_redis(settings, private_redis.url)
    await redis_is_tried_again()
    assert (await admit(limited)).store == "redis"  # the place was given back in Redis first


async def test_it_does_not_wait_for_a_silent_redis_on_every_request(settings: Any, private_redis: PrivateRedis) -> None:
    use_redis(settings, private_redis.url)
    limited = key(6, requests_per_minute=1000)
    await admit(limited)  # connected
    private_redis.pause()
    try:
        started = time.monotonic()
        leases = [await admit(limited) for _ in range(20)]
        elapsed = time.monotonic() - started
    finally:
        private_redis.resume()
    assert {lease.store for lease in leases} == {"local"}
    # One request waits for Redis's answer (COMMAND_TIMEOUT), the others count here until it is tried again.
    assert elapsed < 2.5, f"20 requests took {elapsed:.1f} s against a silent Redis"
