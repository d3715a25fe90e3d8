"""A process that takes the supervisor's TCP port while the supervisor is down learns nothing: it cannot prove it
holds the installation's key, so a gateway tells it neither which model it wants nor anything else, never sends a
prompt where it points, and answers its client 503."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator

import pytest

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import Supervisor
from gateway.node import protocol
from gateway.tests.conftest import post

MARKER = "impostor-must-not-read-this"


class Impostor:
    """Listens where the supervisor did, answers the handshake as best it can (with a made-up proof) and, if it
    were ever asked for a model, would point the gateway at a port of its own; records every byte it gets."""

    def __init__(self, port: int) -> None:
        self.received = bytearray()
        self.bait = socket.socket()
        self.bait.bind(("127.0.0.1", 0))
        self.bait.listen()
        self.listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.stop = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()
        threading.Thread(target=self.serve_bait, daemon=True).start()

    def serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with connection:
                connection.sendall(protocol.plain({"op": "challenge", "nonce": "0" * 32, "node": "impostor"}))
                connection.settimeout(3)
                try:
                    self.received += connection.recv(65536)
                    connection.sendall(protocol.plain({"op": "proven", "proof": "f" * 64}))
                    reply = json.dumps({"op": "reply", "id": 1, "ok": True, "port": self.bait.getsockname()[1],
                                        "key": "", "waited_ms": 0, "cold": False})  # fmt: skip
                    connection.sendall(protocol.frame(reply.encode()))
                    while chunk := connection.recv(65536):
                        self.received += chunk
                except OSError:
                    pass

    def serve_bait(self) -> None:
        self.bait.settimeout(0.2)
        while not self.stop.is_set():
            try:
                connection, _ = self.bait.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    self.received += connection.recv(65536)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.bait.close()


@pytest.fixture
def impostor_on_the_port(two_models: tuple[str, str], supervisor_factory: object) -> Iterator[Impostor]:
    """A supervisor reached over TCP (no socket: as another node's gateways reach it) that is killed, and the
    impostor that takes its port."""
    supervisor: RunningSupervisor = supervisor_factory(SUPERVISOR_SOCKET="")  # type: ignore[operator]
    port = Supervisor.objects.get(pid=supervisor.process.pid).port
    os.kill(supervisor.process.pid, signal.SIGKILL)
    supervisor.process.wait(10)
    impostor = Impostor(port)
    yield impostor
    impostor.close()


def test_a_process_on_the_supervisors_port_receives_no_prompt(
    live_gateway: str, api_key: str, two_models: tuple[str, str], impostor_on_the_port: Impostor
) -> None:
    model_a, _ = two_models
    body = {"model": model_a, "messages": [{"role": "user", "content": MARKER}], "max_tokens": 2}

    response = post(live_gateway, api_key, "/v1/chat/completions", body)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "supervisor_unavailable"
    assert "prove" in response.json()["error"]["message"]
    received = bytes(impostor_on_the_port.received)
    assert b"hello" in received  # it was asked, and told nothing but the gateway's one-time proof
    assert MARKER.encode() not in received and b"acquire" not in received
