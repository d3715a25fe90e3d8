"""/health shows managed models as their supervisor recorded them: standby while stopped (they load on demand),
probed once running, down without a supervisor; and each node's budget."""

from __future__ import annotations

import httpx

from gateway.lifecycle.tests.conftest import BUDGET_FOR_ONE_MB, RunningSupervisor
from gateway.models import Supervisor
from gateway.tests.conftest import post
from tests.live import stop_process

MIB = 1024 * 1024


def health(live_gateway: str, api_key: str) -> dict:
    response = httpx.get(f"{live_gateway}/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert response.status_code == 200
    return response.json()


def test_health_shows_standby_then_the_running_process_and_the_budget(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    before = {m["id"]: m for m in health(live_gateway, api_key)["models"]}
    assert before["model-a"]["status"] == "ok"  # it serves: it loads on demand
    stopped = before["model-a"]["backends"][0]
    assert (stopped["managed"], stopped["state"], stopped["status"]) == (True, "stopped", "standby")

    post(live_gateway, api_key, "/v1/chat/completions", {"model": "model-a", "messages": [{"role": "user", "content": "Hi"}],
                                                         "max_tokens": 2})  # fmt: skip
    body = health(live_gateway, api_key)

    backend = {m["id"]: m for m in body["models"]}["model-a"]["backends"][0]
    assert (backend["state"], backend["status"]) == ("ready", "ok")
    assert backend["url"] == f"http://127.0.0.1:{supervisor.state('model-a')['port']}"
    assert backend["slots"] == {"busy": 0, "idle": 1}
    (node,) = body["nodes"]
    assert node["supervisor_alive"] is True
    assert node["budget"]["total_bytes"] == BUDGET_FOR_ONE_MB * MIB


def test_without_a_supervisor_a_managed_model_is_down(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    stop_process(supervisor.process)
    Supervisor.objects.update(heartbeat="2000-01-01T00:00:00Z")  # as a supervisor gone long ago leaves it

    body = health(live_gateway, api_key)

    model = {m["id"]: m for m in body["models"]}["model-a"]
    assert model["status"] == "down"
    assert "no supervisor answers" in model["backends"][0]["error"]
    assert body["status"] == "degraded"
