"""The managed-models websocket: a snapshot at connect, then each state change the supervisor pushes, for
dashboard users only; whether the user may load and unload is part of the snapshot."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from dashboard.tests.conftest import connect, next_matching
from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import Backend
from gateway.node import link as client
from gateway.node import states

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_sends_a_snapshot_then_every_state_change(
    alice, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    communicator = await connect("/ws/models/", alice)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await next_matching(communicator, lambda m: m["type"] == "snapshot")
    assert snapshot["staff"] is True
    assert [(m["id"], m["state"]) for m in snapshot["data"]] == [("model-a", "stopped"), ("model-b", "stopped")]
    assert states.connect_to(snapshot["nodes"][0]) == supervisor.address  # its socket: it runs on this node

    backend = await database_sync_to_async(Backend.objects.get)(model__model_id="model-a")
    await client.command(supervisor.address, "load", backend.id, wait=False)

    starting = await next_matching(communicator, lambda m: m["type"] == "state" and m["model"]["state"] == "starting")
    assert starting["model"]["id"] == "model-a"
    ready = await next_matching(communicator, lambda m: m["type"] == "state" and m["model"]["state"] == "ready")
    assert ready["budget"]["used_bytes"] > 0
    await communicator.disconnect()
    await client.close_connections()


async def test_a_user_with_the_permission_reads_but_is_not_staff(carol, two_models: tuple[str, str]) -> None:
    communicator = await connect("/ws/models/", carol)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await next_matching(communicator, lambda m: m["type"] == "snapshot")
    assert snapshot["staff"] is False
    await communicator.disconnect()


async def test_it_refuses_users_without_access(bob) -> None:
    communicator = await connect("/ws/models/", bob)
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403
