"""Redis is a helper, not a point of failure: a live gateway under load keeps answering 200, and logs every request,
while its Redis is shut down for two seconds and started again; /health says the limits are degraded meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.models import APIKey, RequestLog
from gateway.registry import register_model
from tests.fake_llama import FakeLlama
from tests.live import METRICS_TOKEN, database_url, start_daphne, stop_process
from tests.redis_server import PrivateRedis
from tests.scrape import scrape, value
from tests.settle import settle_live_server

CHAT = "/v1/chat/completions"
BODY = {"model": "faked", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
THREADS = 4
OUTAGE = 2.0  # seconds
MOST = 2000  # requests at most, whatever happens


@pytest.fixture
def gateway(private_redis: PrivateRedis, transactional_db: None) -> Iterator[str]:
    """A live gateway whose limits and channel layer are in the private Redis."""
    env = {"DATABASE_URL": database_url(), "REDIS_URL": private_redis.url, "LOG_FLUSH_INTERVAL": "0.1",
           "MONITOR_METRICS_TOKEN": METRICS_TOKEN}  # fmt: skip
    process, url = start_daphne(env)
    yield url
    settle_live_server(url)
    stop_process(process)


def limits_health(url: str, key: str) -> dict:
    response = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["limits"]


def test_it_answers_and_logs_every_request_while_redis_restarts(
    gateway: str, private_redis: PrivateRedis, fake_llama: FakeLlama
) -> None:
    fake_llama.record = False
    register_model("faked", [fake_llama.url], kind="chat", request_timeout=30)
    # Limits the load never reaches: every request goes through them.
    _, key = APIKey.objects.create_key(name="limited", requests_per_minute=100_000, max_concurrent=100)
    assert limits_health(gateway, key) == {"store": "redis", "degraded": False, "since": None}
    before = scrape(gateway)
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
            while not stop.is_set() and len(answers) < MOST:
                response = client.post(CHAT, json=BODY)
                answers.append((response.status_code, response.headers.get("X-Request-Id", response.text)))

    def served_at_least(count: int, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while len(answers) < count:
            assert time.monotonic() < deadline, f"only {len(answers)} answers after {limit:.0f} s"
            time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        served_at_least(100)
        private_redis.stop()
        down_since, seen_while_down = time.monotonic(), []
        while time.monotonic() - down_since < OUTAGE:
            seen_while_down.append(limits_health(gateway, key))
            time.sleep(0.1)
        private_redis.start()  # on the same port, empty
        served_at_least(len(answers) + 150)
        deadline = time.monotonic() + 10
        while (health := limits_health(gateway, key))["degraded"]:
            assert time.monotonic() < deadline, f"the limits still say degraded 10 s after Redis is back: {health}"
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    statuses = {status for status, _ in answers}
    assert statuses == {200}, [answer for answer in answers if answer[0] != 200][:5]
    assert any(seen["degraded"] and seen["since"] for seen in seen_while_down), seen_while_down
    assert health == {"store": "redis", "degraded": False, "since": None}
    admitted_alone = value(scrape(gateway), "jetson_gateway_limits_fallback_total") - value(
        before, "jetson_gateway_limits_fallback_total"
    )
    assert admitted_alone > 0, "no request was admitted without Redis: was Redis down at all?"
    settle_live_server(gateway)
    request_ids = [request_id for _, request_id in answers]
    assert RequestLog.objects.filter(request_id__in=request_ids).count() == len(answers) > 200
