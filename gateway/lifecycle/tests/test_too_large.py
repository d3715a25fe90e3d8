"""A model bigger than the node's whole budget is refused at once, with the figures, and nothing is started."""

from __future__ import annotations

import time

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}


def test_a_model_bigger_than_the_budget_is_refused_with_its_figures(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, _ = two_models
    supervisor: RunningSupervisor = supervisor_factory(MODEL_MEMORY_BUDGET_MB=200)  # type: ignore[operator]
    started = time.monotonic()

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

    assert time.monotonic() - started < 2  # at once, not after a load attempt
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_too_large"
    assert error["type"] == "unavailable_error"
    message = error["message"]
    assert "budget of 200 MiB" in message
    assert "weights 235" in message and "KV cache 18" in message  # the estimate's own figures
    assert supervisor.starts(model_a) == 0
    assert supervisor.state(model_a)["state"] == "stopped"
