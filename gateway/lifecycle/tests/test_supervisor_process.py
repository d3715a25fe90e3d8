"""The supervisor process: only this installation may talk to it, and its models never outlive it."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import Backend, ManagedRuntime, Supervisor
from gateway.node import link as client
from gateway.node import protocol


def load(supervisor: RunningSupervisor, model_id: str) -> int:
    backend = Backend.objects.get(model__model_id=model_id, managed=True)
    reply = asyncio.run(client.command(supervisor.address, "load", backend.id, wait=True))
    assert reply["model"]["state"] == "ready", reply
    return reply["model"]["pid"]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, waiting for init to reap it
    except psutil.NoSuchProcess:
        return True


def gone_within(pid: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def hello(address: str, proof: str) -> dict | None:
    """Answer the supervisor's challenge (over TCP) with `proof`; its answer."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await protocol.read_plain(reader)  # the challenge
        writer.write(protocol.plain({"op": "hello", "nonce": protocol.new_nonce(), "proof": proof}))
        return await protocol.read_plain(reader)
    finally:
        writer.close()


def test_a_connection_without_the_right_proof_is_refused(
    two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    row = Supervisor.objects.get(pid=supervisor.process.pid)
    answer = asyncio.run(hello(client.tcp_address(row.host, row.port), "0" * 64))

    assert answer is not None and answer["op"] == "error"
    assert "bad proof" in answer["message"]
    assert asyncio.run(client.command(supervisor.address, "status"))["ok"]  # the right proof is welcome


def test_sigterm_stops_every_model_and_records_them_stopped(
    two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    pid = load(supervisor, model_a)

    supervisor.process.send_signal(signal.SIGTERM)

    assert supervisor.process.wait(30) == 0
    assert gone(pid)
    assert ManagedRuntime.objects.get(backend__model__model_id=model_a).state == "stopped"


def test_models_die_with_a_killed_supervisor_and_the_next_one_starts_clean(
    two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, _ = two_models
    first: RunningSupervisor = supervisor_factory()  # type: ignore[operator]
    pid = load(first, model_a)

    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)

    assert gone_within(pid, 1.0)  # PR_SET_PDEATHSIG: the kernel kills it with its parent
    second: RunningSupervisor = supervisor_factory()  # type: ignore[operator]
    assert second.state(model_a)["state"] == "stopped"
    assert ManagedRuntime.objects.get(backend__model__model_id=model_a).state == "stopped"
