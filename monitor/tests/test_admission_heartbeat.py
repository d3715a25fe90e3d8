"""The sampler tells its node's supervisor the admission decision again every ADMISSION_INTERVAL, not only when it
changes: a heartbeat, without which the supervisor takes a soft or hard decision for stale and admits normally."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.lifecycle.server import Server
from gateway.lifecycle.tests.conftest import RunningSampler
from gateway.models import Supervisor
from gateway.node.identity import node_name
from tests.live import ARTIFACTS


class FakeSupervisor:
    """The supervisor's own protocol server with no models, on loopback: records every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.server = Server(node_name(), self.heard, lambda connection: None, lambda: {"models": [], "budget": {}})
        listening = threading.Event()

        def run() -> None:
            self.loop.run_until_complete(self.server.listen_tcp("127.0.0.1", 0))
            listening.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert listening.wait(10)
        assert self.server.port is not None
        self.port = self.server.port

    def heard(self, connection: object, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def admissions(self) -> list[dict[str, Any]]:
        return [message for message in self.messages if message.get("op") == "admission"]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def fake_supervisor(transactional_db: None) -> Iterator[FakeSupervisor]:
    supervisor = FakeSupervisor()
    Supervisor.objects.create(node=node_name(), host="127.0.0.1", port=supervisor.port)
    yield supervisor
    supervisor.close()


def test_it_repeats_an_unchanged_decision_every_interval(
    fake_supervisor: FakeSupervisor, sampler_factory: Callable[..., RunningSampler]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)  # where sampler_factory writes the sampler's log
    sampler = sampler_factory(ADMISSION_TEMP_SOFT_C=70, ADMISSION_TEMP_HARD_C=85)  # looks every 0.2 s
    sampler.set_temperature(90)
    sampler.wait_for_admission("hard")
    deadline = time.monotonic() + 10
    while len(hard := [m for m in fake_supervisor.admissions() if m["state"] == "hard"]) < 5:
        assert time.monotonic() < deadline, f"the sampler did not repeat its decision: {fake_supervisor.admissions()}"
        time.sleep(0.1)
    assert {(m["code"], m["reason"]) for m in hard} == {("device_overheated", "cpu-thermal at 90 °C (limit 85 °C)")}
