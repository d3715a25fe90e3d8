"""GET /health probes every backend at once; /livez and /readyz answer supervisors without a key."""

from __future__ import annotations

import httpx

from gateway.llama import free_port
from gateway.registry import register_model


def test_it_reports_each_backend_with_slots_and_latency(
    live_gateway: str, api_key: str, chat_model: str, llama_chat: object
) -> None:
    register_model("half-down", [llama_chat.url, f"http://127.0.0.1:{free_port()}"], kind="chat")  # type: ignore[attr-defined]
    response = httpx.get(f"{live_gateway}/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["models"]}
    gemma = models[chat_model]["backends"][0]
    assert gemma["status"] == "ok"
    assert gemma["latency_ms"] >= 0
    assert gemma["slots"]["busy"] + gemma["slots"]["idle"] == 2
    statuses = sorted(b["status"] for b in models["half-down"]["backends"])
    assert statuses == ["down", "ok"]
    assert models["half-down"]["status"] == "ok"  # one backend is enough to serve
    assert "dropped" in response.json()["request_log"]


def test_it_needs_a_key(live_gateway: str, chat_model: str) -> None:
    response = httpx.get(f"{live_gateway}/health")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_liveness_and_readiness_need_no_key(live_gateway: str, transactional_db: None) -> None:
    assert httpx.get(f"{live_gateway}/livez").json() == {"status": "ok"}
    ready = httpx.get(f"{live_gateway}/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True
