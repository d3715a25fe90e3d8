"""A model idle for its TTL is stopped; a TTL of 0 keeps it."""

from __future__ import annotations

import time

from gateway.lifecycle.tests.conftest import RunningSupervisor, register_managed
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}
TTL = 1.0


def test_it_unloads_a_model_idle_for_its_ttl(
    live_gateway: str, api_key: str, transactional_db: None, small_gguf: str, supervisor: RunningSupervisor
) -> None:
    register_managed("brief", small_gguf, idle_ttl=TTL)
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": "brief", **HELLO}).status_code == 200
    assert supervisor.state("brief")["unload_at"] is not None
    finished = time.monotonic()

    supervisor.wait_for("brief", lambda s: s["state"] == "stopped", TTL + 10, "stopped")

    # Not before its TTL, and within a second of it (SIGTERM ends llama-server at once).
    assert TTL <= time.monotonic() - finished <= TTL + 1.5
    assert supervisor.llama_servers() == []


def test_a_model_with_ttl_zero_stays(
    live_gateway: str, api_key: str, transactional_db: None, small_gguf: str, supervisor_factory: object
) -> None:
    register_managed("resident", small_gguf, idle_ttl=0)
    supervisor = supervisor_factory(MODEL_IDLE_TTL=TTL)  # type: ignore[operator]  # the model's own 0 wins
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": "resident", **HELLO}).status_code == 200

    time.sleep(TTL + 1.5)

    state = supervisor.state("resident")
    assert (state["state"], state["unload_at"]) == ("ready", None)
