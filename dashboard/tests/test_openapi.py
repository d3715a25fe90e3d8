"""The API reference's OpenAPI document: every path exists here, request bodies follow the gateway's serializers."""

from __future__ import annotations

from django.test import Client
from django.urls import Resolver404, resolve, reverse

from gateway import schemas


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
