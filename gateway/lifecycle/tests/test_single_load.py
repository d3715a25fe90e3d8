"""Requests that arrive while a model loads wait for that one load: never a second process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.tests.conftest import post
from tests.live import start_daphne, stop_process

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}


def test_five_concurrent_requests_for_a_stopped_model_start_exactly_one_process(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: post(live_gateway, api_key, "/v1/chat/completions",
                                                 {"model": model_a, **HELLO}), range(5)))  # fmt: skip

    assert [r.status_code for r in responses] == [200] * 5
    assert supervisor.starts(model_a) == 1
    assert len(supervisor.llama_servers()) == 1


def test_two_gateway_processes_over_one_supervisor_never_start_a_model_twice(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    from tests.live import database_url

    model_a, _ = two_models
    second, second_url = start_daphne({"DATABASE_URL": database_url()})
    try:
        gateways = [live_gateway, second_url] * 3
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda url: post(url, api_key, "/v1/chat/completions",
                                                       {"model": model_a, **HELLO}), gateways))  # fmt: skip
    finally:
        stop_process(second)

    assert [r.status_code for r in responses] == [200] * 6
    assert supervisor.starts(model_a) == 1
    assert len(supervisor.llama_servers()) == 1
