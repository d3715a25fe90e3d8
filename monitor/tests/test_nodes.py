"""GET /api/nodes lists every sampled node with its board facts, and the metric names for history."""

from __future__ import annotations

from django.test import Client

from monitor.models import METRICS, Node
from monitor.tests.samples import make_sample


def test_it_lists_the_nodes(staff_client: Client) -> None:
    make_sample("orin-1")
    make_sample("nano-1")
    Node.objects.filter(name="orin-1").update(board_model="NVIDIA Jetson AGX Orin Developer Kit", power_mode="MAXN")
    body = staff_client.get("/api/nodes").json()
    assert [node["name"] for node in body["nodes"]] == ["nano-1", "orin-1"]
    assert body["nodes"][1]["board_model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert body["nodes"][1]["last_seen"] is not None
    assert list(body["metrics"]) == list(METRICS)


def test_it_is_closed_to_keys_without_the_scope(bob_key: str) -> None:
    assert Client().get("/api/nodes", HTTP_AUTHORIZATION=f"Bearer {bob_key}").status_code == 403
