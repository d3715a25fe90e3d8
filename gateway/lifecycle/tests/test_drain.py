"""SIGTERM drains the supervisor: nothing new is granted, the generation in flight finishes, then every model is
stopped and the supervisor exits, all within the time the unit allows (TimeoutStopSec)."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import ManagedRuntime
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
TOKENS = 40


def test_sigterm_lets_the_generation_in_flight_finish_then_stops_its_model(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, _ = two_models
    supervisor: RunningSupervisor = supervisor_factory(SUPERVISOR_DRAIN_SECONDS=60)  # type: ignore[operator]
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    pid = supervisor.state(model_a)["pid"]
    events: list[dict] = []

    def stream() -> None:
        body = {"model": model_a, "stream": True, "messages": HELLO["messages"], "max_tokens": TOKENS,
                "ignore_eos": True}  # fmt: skip
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.stream("POST", f"{live_gateway}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line[6:]))

    streaming = threading.Thread(target=stream)
    streaming.start()
    supervisor.wait_for(model_a, lambda s: s["in_flight"] == 1, 30, "busy")

    supervisor.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})
    streaming.join(120)

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] in ("supervisor_draining", "supervisor_unavailable")
    finishes = [e["choices"][0]["finish_reason"] for e in events if e.get("choices")]
    assert finishes[-1] == "length", events[-3:]  # the stream in flight was never cut
    assert supervisor.process.wait(30) == 0
    assert not _alive(pid)
    assert ManagedRuntime.objects.get(backend__model__model_id=model_a).state == "stopped"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
