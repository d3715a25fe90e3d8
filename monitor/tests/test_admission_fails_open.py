"""Admission fails open with a real sampler (`manage.py monitor` over a fake Orin Nano): a thermal zone that stops
reading while hot no longer holds the node hard, and a hard node whose sampler was killed reads as stale in /health,
/api/nodes and /metrics (its supervisor admits load normally then)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.test import Client

from gateway.lifecycle.tests.conftest import RunningSampler
from gateway.node.identity import node_name
from tests.answers import answer_schema, conforms
from tests.live import ARTIFACTS
from tests.scrape import parse, value

STALE_AFTER = 2.0
LIMITS = {"ADMISSION_TEMP_SOFT_C": 70, "ADMISSION_TEMP_HARD_C": 85, "ADMISSION_STALE_SECONDS": STALE_AFTER}
# The bound, plus a look at the zones (0.2 s) or a sample (0.5 s) that comes late on a busy machine.
WITHIN = STALE_AFTER + 3


def hot_node(sampler_factory: Callable[..., RunningSampler]) -> RunningSampler:
    ARTIFACTS.mkdir(exist_ok=True)  # where sampler_factory writes the sampler's log
    sampler = sampler_factory(**LIMITS)
    sampler.set_temperature(90)
    sampler.wait_for_admission("hard")
    return sampler


def this_node(nodes: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(node for node in nodes if node[key] == node_name())


def test_a_thermal_zone_that_stops_reading_no_longer_holds_the_node_hard(
    sampler_factory: Callable[..., RunningSampler],
    staff_client: Client,
) -> None:
    sampler = hot_node(sampler_factory)
    temp = sampler.sys / "class/thermal/thermal_zone0/temp"
    temp.unlink()
    temp.mkdir()  # reading it fails (EISDIR), as a zone whose sensor stops answering does
    sampler.wait_for_admission("normal", limit=WITHIN)
    admission = this_node(staff_client.get("/api/nodes").json()["nodes"], "name")["admission"]
    assert admission["state"] == "normal"
    assert admission["reason"].startswith("stale: no temperature reading for "), admission


def test_a_hard_node_whose_sampler_was_killed_reads_as_stale(
    sampler_factory: Callable[..., RunningSampler],
    staff_client: Client,
    settings: Any,
) -> None:
    settings.ADMISSION_STALE_SECONDS = STALE_AFTER
    sampler = hot_node(sampler_factory)
    sampler.process.kill()
    sampler.process.wait()
    deadline = time.monotonic() + WITHIN
    while (admission := this_node(staff_client.get("/health").json()["admission"], "node"))["state"] != "stale":
        assert admission["state"] == "hard", admission
        assert time.monotonic() < deadline, f"/health did not say stale within {WITHIN} s: {admission}"
        time.sleep(0.1)
    health = staff_client.get("/health").json()
    assert conforms(health, answer_schema("/health")), "the OpenAPI document says otherwise"
    assert admission["reason"] == "last decided hard: cpu-thermal at 90 °C (limit 85 °C)"
    assert admission["since"] == admission["last_seen"] is not None  # silent since its last sample
    nodes = staff_client.get("/api/nodes").json()
    assert this_node(nodes["nodes"], "name")["admission"]["state"] == "stale"
    assert conforms(nodes, answer_schema("/api/nodes")), "the OpenAPI document says otherwise"
    samples = parse(staff_client.get("/metrics").content.decode())
    states = {state: value(samples, "jetson_admission_state", node=node_name(), state=state) for state in
              ("normal", "soft", "hard", "stale")}  # fmt: skip
    assert states == {"normal": 0, "soft": 0, "hard": 0, "stale": 1}
