"""GET /api/models/running and POST /api/models/<id>/load | unload | restart: staff sessions or keys with
scope_models; readers with the dashboard permission; a busy model's unload is refused, never cut off."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from gateway.lifecycle.tests.conftest import BUDGET_FOR_ONE_MB, RunningSupervisor, streaming
from gateway.models import APIKey

MIB = 1024 * 1024


@pytest.fixture
def models_key(transactional_db: None) -> str:
    return APIKey.objects.create_key(name="operator", scope_models=True)[1]


def api(live_gateway: str, key: str, method: str, path: str) -> httpx.Response:
    return httpx.request(method, f"{live_gateway}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_it_lists_managed_models_and_each_nodes_budget(
    live_gateway: str, models_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    response = api(live_gateway, models_key, "GET", "/api/models/running")

    assert response.status_code == 200
    body = response.json()
    assert [(m["id"], m["state"]) for m in body["data"]] == [("model-a", "stopped"), ("model-b", "stopped")]
    assert all(m["memory"]["estimated_bytes"] > 200 * MIB for m in body["data"])
    (node,) = body["nodes"]
    assert node["supervisor"]["alive"] is True
    assert node["budget"] == {
        "node": node["node"],
        "total_bytes": BUDGET_FOR_ONE_MB * MIB,
        "used_bytes": 0,
        "free_bytes": BUDGET_FOR_ONE_MB * MIB,
        "source": "MODEL_MEMORY_BUDGET_MB",
    }


def test_keys_need_the_models_scope_and_strangers_a_key(live_gateway: str, api_key: str, two_models: object) -> None:
    assert api(live_gateway, api_key, "GET", "/api/models/running").status_code == 403
    assert api(live_gateway, api_key, "POST", "/api/models/model-a/load").status_code == 403
    anonymous = httpx.get(f"{live_gateway}/api/models/running", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"


def test_dashboard_users_may_read_only_staff_may_operate_with_the_csrf_token(two_models: object) -> None:
    carol = User.objects.create_user("carol")
    carol.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(carol)
    assert browser.get("/api/models/running").status_code == 200
    assert browser.post("/api/models/model-a/unload").status_code == 403

    alice = User.objects.create_user("alice", is_staff=True)
    browser.force_login(alice)
    refused = browser.post("/api/models/model-a/unload")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"


def test_load_waits_until_ready_and_unload_stops_it(
    live_gateway: str, models_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    loaded = api(live_gateway, models_key, "POST", "/api/models/model-a/load")

    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["model"]["state"] == "ready"
    assert supervisor.state("model-a")["pid"] == loaded.json()["model"]["pid"]

    unloaded = api(live_gateway, models_key, "POST", "/api/models/model-a/unload")

    assert unloaded.status_code == 200
    assert unloaded.json()["model"]["state"] == "stopped"
    assert supervisor.llama_servers() == []


def test_unloading_a_busy_model_is_refused_with_409(
    live_gateway: str, api_key: str, models_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    with streaming(live_gateway, api_key, "model-a", supervisor):
        refused = api(live_gateway, models_key, "POST", "/api/models/model-a/unload")

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "model_busy"
    assert "Retry-After" in refused.headers
    assert supervisor.state("model-a")["state"] == "ready"


def test_an_unknown_model_or_operation_is_404_and_a_wrong_method_405(
    live_gateway: str, models_key: str, two_models: object
) -> None:
    assert api(live_gateway, models_key, "POST", "/api/models/nope/load").status_code == 404
    assert api(live_gateway, models_key, "POST", "/api/models/model-a/explode").status_code == 404
    wrong_method = api(live_gateway, models_key, "GET", "/api/models/model-a/load")
    assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "POST")
