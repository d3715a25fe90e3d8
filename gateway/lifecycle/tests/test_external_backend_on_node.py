"""Energy and heat admission belong to the node, not to who started the process: a llama-server the supervisor does
not run (an external backend at a loopback URL: the layout of the service this project replaces, one unit per model)
is refused when the board is hot and gets its share of the board's energy, as a managed model does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.lifecycle.tests.conftest import RunningSampler, RunningSupervisor
from gateway.lifecycle.tests.test_energy_per_request import measured
from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.slots import seconds_until_idle

MODEL = "unit-model"
LIMITS = {"ADMISSION_TEMP_SOFT_C": 70, "ADMISSION_TEMP_HARD_C": 85, "ADMISSION_RECOVER_C": 5}


def ask(live_gateway: str, api_key: str) -> Any:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "ignore_eos": True}
    return post(live_gateway, api_key, "/v1/chat/completions", body)


def test_an_external_backend_on_this_node_is_shed_when_hot_and_gets_its_energy(
    live_gateway: str, api_key: str, llama_chat: Any, supervisor: RunningSupervisor,
    sampler_factory: Callable[..., RunningSampler],
) -> None:  # fmt: skip
    seconds_until_idle(llama_chat.url, limit=120)
    register_model(MODEL, [llama_chat.url], kind="chat")  # http://127.0.0.1:…: on this node
    node = sampler_factory(**LIMITS)
    node.set_power(8.0)

    node.set_temperature(90)
    node.wait_for_admission("hard")
    hot = ask(live_gateway, api_key)

    assert hot.status_code == 503, hot.text
    assert hot.json()["error"]["code"] == "device_overheated"

    node.set_temperature(45)
    node.wait_for_admission("normal")
    served = ask(live_gateway, api_key)

    row = measured(served)
    assert row.energy_mj > 0
