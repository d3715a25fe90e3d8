"""The API reference's OpenAPI document: every path exists here, request bodies follow the gateway's serializers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from rest_framework import serializers

from gateway import schemas
from gateway.models import NodeAdmission
from gateway.requestlog.tests.helpers import make_row
from monitor.models import Node
from monitor.operations import openapi
from tests.answers import answer_schema, conforms


def test_it_describes_only_paths_this_server_has(client: Client, alice) -> None:
    client.force_login(alice)
    document = client.get(reverse("dashboard:openapi")).json()
    assert document["openapi"].startswith("3.")
    missing = []
    for path in document["paths"]:
        try:
            resolve(path.replace("{model_id}", "some-model"))
        except Resolver404:
            missing.append(path)
    assert not missing


def test_it_takes_request_fields_from_the_gateway_serializers(client: Client, alice) -> None:
    client.force_login(alice)
    document = client.get(reverse("dashboard:openapi")).json()
    body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == set(schemas.ChatRequestSerializer().fields)
    assert set(body["required"]) == {"model", "messages"}
    assert body["properties"]["temperature"] == {"type": "number", "minimum": 0, "maximum": 2, "nullable": True}
    message = body["properties"]["messages"]["items"]
    assert "user" in message["properties"]["role"]["enum"]
    assert document["servers"] == [{"url": "http://testserver"}]


def test_it_needs_a_signed_in_dashboard_user(client: Client, bob) -> None:
    assert client.get(reverse("dashboard:openapi")).status_code == 302
    client.force_login(bob)
    assert client.get(reverse("dashboard:openapi")).status_code == 403


def test_it_says_what_the_serializers_refuse(client: Client, alice) -> None:
    client.force_login(alice)
    paths = client.get(reverse("dashboard:openapi")).json()["paths"]

    def body(path: str) -> dict:
        return paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    chat, completion, embeddings = body("/v1/chat/completions"), body("/v1/completions"), body("/v1/embeddings")
    assert chat["properties"]["model"]["minLength"] == 1  # a blank model is a 400
    assert chat["properties"]["stream"] == {"type": "boolean", "default": False}  # not "true", not 1
    assert chat["properties"]["messages"]["minItems"] == 1
    assert completion["properties"]["echo"]["enum"] == [False]
    assert embeddings["additionalProperties"] is False  # unknown fields pass on to llama-server for the others
    assert "additionalProperties" not in chat
    assert "404" in paths["/v1/models/{model_id}"]["get"]["responses"]
    assert "404" in paths["/system/stats"]["get"]["responses"]
    assert paths["/health"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/livez"]["get"]


def test_it_describes_only_fields_it_can_describe_exactly() -> None:
    # DRF's own fields take "7" for 7 or trim strings: no schema says what they accept, so none is made up.
    for field in (serializers.IntegerField(), serializers.BooleanField(), serializers.CharField()):
        with pytest.raises(TypeError):
            openapi.field_schema(field)


def test_it_describes_usage_buckets_as_the_api_gives_them(client: Client, alice) -> None:
    now = timezone.now()
    make_row(now, model_used="qwen", completion_tokens=12, energy_mj=3000.0, latency_ms=20.0)
    make_row(now, model_used="gemma", completion_tokens=4)  # not measured: null energy
    client.force_login(alice)
    schema = answer_schema("/api/usage")
    for by in ("model", "key"):
        body = client.get(f"/api/usage?by={by}").json()
        assert len(body["data"]) == (2 if by == "model" else 1)
        assert conforms(body, schema), body
    assert {item["model"]: item["tokens_per_joule"] for item in client.get("/api/usage").json()["data"]} == {
        "gemma": None,
        "qwen": 4.0,
    }


def test_it_describes_admission_states_as_nodes_give_them(client: Client, alice) -> None:
    Node.objects.create(name="orin-1", power_mode="MAXN", last_seen=timezone.now())
    NodeAdmission.objects.create(node="orin-1", state="hard", reason="92 °C", since=timezone.now(),
                                 last_seen=timezone.now())  # fmt: skip
    Node.objects.create(name="nano-1")
    Node.objects.create(name="tx-1", last_seen=timezone.now() - timedelta(hours=1))
    NodeAdmission.objects.create(node="tx-1", state="soft", last_seen=timezone.now() - timedelta(hours=1))
    client.force_login(alice)
    nodes = client.get("/api/nodes").json()
    assert [(n["name"], n["admission"]["state"]) for n in nodes["nodes"]] == [
        ("nano-1", "normal"), ("orin-1", "hard"), ("tx-1", "stale"),
    ]  # fmt: skip
    assert nodes["nodes"][1]["admission"]["reason"] == "92 °C"
    assert conforms(nodes, answer_schema("/api/nodes")), nodes


def _parameter(paths: dict, path: str, name: str) -> dict:
    return next(p for p in paths[path]["get"]["parameters"] if p["name"] == name)


def test_it_says_a_cursor_is_one_from_a_link_and_anything_else_a_400(client: Client, alice) -> None:
    client.force_login(alice)
    cursor = _parameter(client.get(reverse("dashboard:openapi")).json()["paths"], "/api/logs", "cursor")
    assert cursor["schema"]["pattern"] == "^(?:[A-Za-z0-9+/=]*)$"
    assert "400" in cursor["description"]
    for value in ("cD15ZXN0ZXJkYXk=", "not a cursor!"):  # base64 of "p=yesterday", and not base64 at all
        response = client.get("/api/logs", {"cursor": value})
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["param"] == "cursor"


def test_it_says_how_far_back_usage_goes(client: Client, alice) -> None:
    client.force_login(alice)
    since = _parameter(client.get(reverse("dashboard:openapi")).json()["paths"], "/api/usage", "since")
    assert "744 hours" in since["description"] and "400 days" in since["description"]
    too_far = (timezone.now() - timedelta(hours=745)).isoformat()
    response = client.get("/api/usage", {"group": "hour", "since": too_far})
    assert (response.status_code, response.json()["error"]["param"]) == (400, "since")
