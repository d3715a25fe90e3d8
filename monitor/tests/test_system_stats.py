"""GET /system/stats: a node's latest sample, for staff sessions and keys with the monitoring scope only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from monitor.tests.samples import make_sample


@pytest.fixture
def samples(db: None) -> None:
    now = timezone.now()
    make_sample("orin-1", now - timedelta(seconds=4), cpu_percent=10.0)
    make_sample("orin-1", now - timedelta(seconds=2), cpu_percent=20.0, detail={"gpu": {"percent": 5.0}})
    make_sample("orin-2", now - timedelta(seconds=1), cpu_percent=90.0)


def test_it_returns_the_latest_sample_of_the_named_node(samples: None, staff_client: Client) -> None:
    body = staff_client.get("/system/stats?node=orin-1").json()
    assert body["node"] == "orin-1"
    assert body["summary"]["cpu_percent"] == 20.0
    assert body["gpu"] == {"percent": 5.0}


def test_it_defaults_to_the_node_that_reported_last(samples: None, staff_client: Client, settings: object) -> None:
    settings.MONITOR_NODE_NAME = "not-sampled-here"  # type: ignore[attr-defined]
    assert staff_client.get("/system/stats").json()["node"] == "orin-2"


def test_it_accepts_a_key_with_the_monitoring_scope(samples: None, alice_key: str) -> None:
    response = Client().get("/system/stats?node=orin-2", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 200
    assert response.json()["summary"]["cpu_percent"] == 90.0


def test_it_refuses_a_key_without_the_scope(samples: None, bob_key: str) -> None:
    response = Client().get("/system/stats", HTTP_AUTHORIZATION=f"Bearer {bob_key}")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_it_asks_anonymous_callers_for_a_key(samples: None) -> None:
    response = Client().get("/system/stats")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["type"] == "authentication_error"


def test_it_refuses_a_bad_key(samples: None) -> None:
    response = Client().get("/system/stats", HTTP_AUTHORIZATION="Bearer sk-nope-0123456789abcdef")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_it_refuses_a_non_staff_session(samples: None) -> None:
    client = Client()
    client.force_login(User.objects.create_user("visitor"))
    assert client.get("/system/stats").status_code == 403


def test_it_says_when_a_node_is_unknown(samples: None, staff_client: Client) -> None:
    response = staff_client.get("/system/stats?node=nano-9")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert response.json()["error"]["code"] == "node_not_found"
