"""Each request gets its share of the board's energy, an energy fact its node's sampler writes and its log row shows:
the integral of the power a test writes into the node's (fake) rails while real requests run over the real small
model, shared among the requests in flight, with the node's idle power subtracted in energy_net_mj."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from gateway.lifecycle.tests.conftest import RunningSampler, RunningSupervisor, register_managed
from gateway.models import RequestLog
from gateway.node.identity import node_name
from gateway.tests.conftest import post
from monitor.models import IdlePower, Node

MODEL = "energy-model"
WITHIN = 0.05  # the bound: 5 %


@pytest.fixture
def node(
    supervisor: RunningSupervisor, sampler_factory: Callable[..., RunningSampler], small_gguf: str, live_gateway: str,
    api_key: str,
) -> RunningSampler:  # fmt: skip
    """The small model managed with two slots, loaded; the node's sampler running over a fake Orin Nano."""
    register_managed(MODEL, small_gguf, parallel=2)
    assert generate(live_gateway, api_key, 2).status_code == 200
    return sampler_factory()


def generate(live_gateway: str, api_key: str, tokens: int) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": tokens,
            "ignore_eos": True}  # fmt: skip
    return post(live_gateway, api_key, "/v1/chat/completions", body)


def in_background(work: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    """Start `work` in a thread; the returned function waits for its response."""
    result: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()

    def wait() -> httpx.Response:
        thread.join(120)
        return result[0]

    return wait


def measured(response: httpx.Response) -> RequestLog:
    """The response's row with its energy, once both are written."""
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    rows = RequestLog.objects.with_energy().filter(request_id=response.headers["X-Request-Id"])
    while (row := rows.first()) is None or row.energy_mj is None:
        assert time.monotonic() < deadline, f"no energy in the row of {response.headers['X-Request-Id']} after 30 s"
        time.sleep(0.1)
    return row


def interval(row: RequestLog) -> tuple[float, float]:
    start = row.created.timestamp()
    return start, start + row.latency_ms / 1000


def share(power_w: float, rows: list[RequestLog], mine: RequestLog) -> float:
    """mJ of a constant power shared equally, at every instant, among the rows in flight then."""
    edges = sorted({edge for row in rows for edge in interval(row)})
    start, end = interval(mine)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        middle = (low + high) / 2
        if start <= middle <= end:
            running = sum(1 for row in rows if interval(row)[0] <= middle <= interval(row)[1])
            total += power_w * 1000 * (high - low) / running
    return total


def test_a_requests_energy_is_the_integral_of_the_power_written(
    live_gateway: str, api_key: str, node: RunningSampler
) -> None:
    steps = [(node.set_power(10), 10_000.0)]
    time.sleep(0.5)
    wait = in_background(lambda: generate(live_gateway, api_key, 150))
    time.sleep(1.0)
    steps.append((node.set_power(20), 20_000.0))  # mid-request: 10 W, then 20 W
    row = measured(wait())
    start, end = interval(row)
    assert steps[1][0] < end - 0.5, "the request ended too early to see the change"
    expected = sum(mw * max(min(until, end) - max(since, start), 0) for (since, mw), (until, _) in
                   zip(steps, [*steps[1:], (end, 0)], strict=True))  # fmt: skip
    print(f"energy {row.energy_mj:.0f} mJ, written {expected:.0f} mJ over {end - start:.2f} s")
    assert row.energy_mj == pytest.approx(expected, rel=WITHIN)


def test_two_overlapping_requests_share_the_energy(live_gateway: str, api_key: str, node: RunningSampler) -> None:
    node.set_power(12)
    time.sleep(0.5)
    long = in_background(lambda: generate(live_gateway, api_key, 200))
    time.sleep(1.0)
    short = generate(live_gateway, api_key, 30)
    rows = [measured(long()), measured(short)]
    first, second = interval(rows[0]), interval(rows[1])
    assert first[0] < second[0] and second[1] < first[1], "the short request must run inside the long one"
    for row in rows:
        print(f"{row.completion_tokens} tokens: {row.energy_mj:.0f} mJ, expected {share(12, rows, row):.0f} mJ")
        assert row.energy_mj == pytest.approx(share(12, rows, row), rel=WITHIN)
    # Together they used the board's energy over the long one, once: nothing counted twice.
    assert sum(row.energy_mj for row in rows) == pytest.approx(12_000 * (first[1] - first[0]), rel=WITHIN)


def test_net_energy_leaves_out_the_idle_power(
    live_gateway: str, api_key: str, supervisor: RunningSupervisor, sampler_factory: Callable[..., RunningSampler],
    small_gguf: str,
) -> None:  # fmt: skip
    register_managed(MODEL, small_gguf, parallel=2)
    assert generate(live_gateway, api_key, 2).status_code == 200
    # This node's idle power in its (empty) power mode, as an earlier run of the sampler measured it: 4 W.
    IdlePower.objects.remember(Node.objects.get_or_create(name=node_name())[0], "", 4000.0, 600.0)
    node = sampler_factory()
    node.set_power(4)
    time.sleep(1.0)  # the sampler has taken its first sample, and with it the node's idle power
    wait = in_background(lambda: generate(live_gateway, api_key, 120))
    time.sleep(0.2)
    node.set_power(14)
    row = measured(wait())
    node.set_power(4)
    start, end = interval(row)
    gross = row.energy_mj
    print(f"gross {gross:.0f} mJ, net {row.energy_net_mj:.0f} mJ over {end - start:.2f} s")
    assert row.energy_net_mj == pytest.approx(gross - 4000 * (end - start), rel=WITHIN)
    assert row.energy_net_mj < gross * 0.8
