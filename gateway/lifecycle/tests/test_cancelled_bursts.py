"""The state machine's interleavings again, fewer, over real processes: bursts of requests whose clients leave at
random moments (while the model loads, as it starts answering, mid-stream), from two gateway processes, leave no
lease and no place in a queue behind, every request that stayed is answered, and the model unloads at its TTL."""

from __future__ import annotations

import random
import threading
import time

from gateway.lifecycle.tests.conftest import RunningSupervisor, register_managed
from gateway.tests.conftest import post
from tests.live import database_url, send_chat_request, start_daphne, stop_process

TTL = 2.0
BURSTS = 3
PER_BURST = 8


def test_cancelled_bursts_leave_no_lease_and_the_model_unloads_at_its_ttl(
    live_gateway: str, api_key: str, small_gguf: str, supervisor_factory: object
) -> None:
    register_managed("bursty", small_gguf, idle_ttl=TTL, parallel=2)
    supervisor: RunningSupervisor = supervisor_factory()  # type: ignore[operator]
    second, second_url = start_daphne({"DATABASE_URL": database_url()})
    chance = random.Random(15)
    answered: list[int] = []
    try:
        for _ in range(BURSTS):
            threads = []
            for index in range(PER_BURST):
                gateway = (live_gateway, second_url)[index % 2]
                stream = chance.random() < 0.5
                leave_after = chance.choice([0.0, 0.05, 0.3, 1.0, None])  # None: stays to the end
                threads.append(
                    threading.Thread(target=_request, args=(gateway, api_key, stream, leave_after, answered))
                )
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            supervisor.wait_for("bursty", lambda s: s["state"] in ("ready", "stopped"), 30, "settled")

        state = supervisor.state("bursty")
        print(f"{len(answered)} requests stayed and were answered; state {state}")
        assert all(status == 200 for status in answered)
        supervisor.wait_for("bursty", lambda s: s["in_flight"] == 0 and s["waiting"] == 0, 5, "free of leases")
        finished = time.monotonic()
        supervisor.wait_for("bursty", lambda s: s["state"] == "stopped", TTL + 10, "unloaded")
        assert time.monotonic() - finished <= TTL + 2
        assert supervisor.llama_servers() == []
    finally:
        stop_process(second)


def _request(gateway: str, api_key: str, stream: bool, leave_after: float | None, answered: list[int]) -> None:
    body = {"model": "bursty", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 20,
            "ignore_eos": True, "stream": stream}  # fmt: skip
    if leave_after is None:
        answered.append(post(gateway, api_key, "/v1/chat/completions", body).status_code)
        return
    connection = send_chat_request(gateway, api_key, body)
    time.sleep(leave_after)
    connection.close()
