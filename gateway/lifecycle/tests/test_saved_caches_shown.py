"""GET /api/models/running shows each managed model's prompt caches saved on disk, as its supervisor's snapshot
said them: written into the model's row, read back by any gateway process."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from gateway.lifecycle.store import _row
from gateway.models import Backend, ManagedRuntime, Supervisor
from gateway.node import states
from gateway.registry import register_model

pytestmark = pytest.mark.django_db(transaction=True)  # the view reads on a thread of its own


def test_running_models_show_their_saved_caches() -> None:
    register_model("qwen", [], managed={"gguf_path": "/models/qwen.gguf", "node": "orin-1"})
    Supervisor.objects.create(node="orin-1", host="127.0.0.1", port=0, heartbeat=timezone.now())
    backend = Backend.objects.get(model__model_id="qwen")
    stopped = states.model_snapshot(backend, None, supervisor_alive=True)
    said = replace(stopped, state="ready", saved_caches=3, saved_cache_bytes=48 * 2**20)
    ManagedRuntime.objects.create(backend=backend, **_row(said))

    client = Client()
    client.force_login(get_user_model().objects.create_user("alice", is_staff=True))
    response = client.get("/api/models/running")
    assert response.status_code == 200
    [model] = response.json()["data"]
    assert (model["id"], model["state"]) == ("qwen", "ready")
    assert (model["saved_caches"], model["saved_cache_bytes"]) == (3, 48 * 2**20)
