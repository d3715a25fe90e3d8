"""The sampler tells its node's supervisor the admission decision again every ADMISSION_INTERVAL, not only when it
changes: a heartbeat, without which the supervisor takes a soft or hard decision for stale and admits normally."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.lifecycle import protocol
from gateway.lifecycle.tests.conftest import RunningSampler
from gateway.models import Supervisor
from monitor.sampler import node_name
from tests.live import ARTIFACTS


class FakeSupervisor:
    """Listens on loopback, welcomes one client and records every message it sends."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.messages: list[dict[str, Any]] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        connection, _ = self.server.accept()
        with connection, connection.makefile("rwb") as stream:
            stream.write(protocol.encode({"op": "challenge", "nonce": "heartbeat-test", "node": node_name()}))
            stream.flush()
            stream.readline()  # its hello
            stream.write(protocol.encode({"op": "welcome", "node": node_name(), "models": [], "budget": {}}))
            stream.flush()
            for line in stream:
                self.messages.append(json.loads(line))

    def admissions(self) -> list[dict[str, Any]]:
        return [message for message in self.messages if message.get("op") == "admission"]


@pytest.fixture
def fake_supervisor(transactional_db: None) -> Iterator[FakeSupervisor]:
    supervisor = FakeSupervisor()
    Supervisor.objects.create(node=node_name(), host="127.0.0.1", port=supervisor.port)
    yield supervisor
    supervisor.server.close()


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
