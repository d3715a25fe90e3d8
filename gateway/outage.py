"""Redis as a helper, not a point of failure: the errors that mean it is unreachable, how long to wait for it, and
RedisOutage, which tells each of its users when to try it again and logs once when it fails and once when it is back.

Its users (the limits, the request log's live tail, the sampler's live metrics, the dashboard's live sockets) carry
on without it: the limits count in the process, the live views pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

# Refused, reset, timed out (asyncio's TimeoutError is an OSError too), or refused by Redis itself.
REDIS_DOWN: tuple[type[Exception], ...] = (RedisError, OSError)
# A TCP handshake with a reachable host takes one round trip (far below a millisecond on a node's network), and
# Linux resends a lost SYN only after a second: a connection not made within this is not going to be made soon.
CONNECT_TIMEOUT = 0.25
# A command's answer, Redis being single-threaded: room for a fork or a slow command on a busy Jetson without
# calling it down, and at most this long stalled for the one request a second that tries a blackholed Redis.
COMMAND_TIMEOUT = 0.5
RETRY_EVERY = 1.0  # seconds between attempts while Redis is unreachable; meanwhile the fallback costs nothing


def client_options() -> dict[str, Any]:
    """redis-py options of every Redis client here (the limits', the channel layer's): connecting is bounded, and a
    broken connection is retried once, at once, on a new one. redis-py 8 hands out pooled connections that a
    restarted Redis has closed (its maintenance notifications skip the pool's check): the first command on each would
    fail. A timeout is not retried: a silent Redis costs one wait, not two."""
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    }


class RedisOutage:
    """One user's view of Redis: up, or down since a time. While it is down, `due` lets one attempt through a second."""

    def __init__(self, name: str, meanwhile: str, logger: logging.Logger) -> None:
        self.name = name  # who, in the log lines
        self.meanwhile = meanwhile  # what happens while Redis is unreachable, for the log line
        self.logger = logger
        self.since: datetime | None = None
        self.next_try = 0.0

    @property
    def degraded(self) -> bool:
        return self.since is not None

    def due(self) -> bool:
        """Whether to use Redis now: always while it works; while it does not, once every RETRY_EVERY seconds."""
        if self.since is None:
            return True
        now = time.monotonic()
        if now < self.next_try:
            return False
        self.next_try = now + RETRY_EVERY  # the others keep to the fallback while this attempt runs
        return True

    def failed(self, exc: BaseException) -> None:
        self.next_try = time.monotonic() + RETRY_EVERY
        if self.since is None:
            self.since = datetime.now(UTC)
            self.logger.warning(
                "%s: Redis unreachable (%s); %s", self.name, str(exc) or type(exc).__name__, self.meanwhile
            )

    def ended(self) -> None:
        if self.since is not None:
            down = (datetime.now(UTC) - self.since).total_seconds()
            self.since = None
            self.logger.warning("%s: Redis is back after %.1f s", self.name, down)

    async def attempt(self, work: Callable[[], Awaitable[object]], timeout: float | None = COMMAND_TIMEOUT) -> bool:
        """Await `work()` within `timeout` unless Redis is known to be down; False when it was not done."""
        if not self.due():
            return False
        try:
            await asyncio.wait_for(work(), timeout)
        except REDIS_DOWN as exc:
            self.failed(exc)
            return False
        self.ended()
        return True

    def status(self) -> dict[str, object]:
        """For /health: this process's view, without asking Redis."""
        return {"degraded": self.degraded, "since": self.since and self.since.isoformat()}
