"""GET /metrics: each node's admission state as jetson_admission_state{node,state} (1 for the current one; stale for
a soft or hard node whose sampler is silent) and since when, without its free-text reason as a label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.test import Client
from django.utils import timezone

from gateway.models import NodeAdmission
from monitor.tests.samples import make_sample
from tests.scrape import parse, value

TOKEN = "scrape-token-admission"
SINCE = datetime(2026, 11, 25, 10, 42, 7, tzinfo=UTC)
REASON = "gpu-thermal at 91.5 °C (limit 90 °C)"


def test_it_exposes_each_nodes_admission_state(db: None, settings: object) -> None:
    settings.MONITOR_METRICS_TOKEN = TOKEN  # type: ignore[attr-defined]
    make_sample("orin-1", cpu_percent=40.0)
    make_sample("nano-1", cpu_percent=3.0)
    NodeAdmission.objects.filter(node="orin-1").update(state="hard", reason=REASON, since=SINCE)
    # No sample row (pruned), but its sampler runs: its state shows all the same.
    NodeAdmission.objects.create(node="nx-1", state="soft", last_seen=timezone.now())
    silent = timezone.now() - timedelta(hours=1)
    NodeAdmission.objects.create(node="tx-1", state="hard", since=SINCE, last_seen=silent)
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    text = response.content.decode()
    samples = parse(text)
    states = {
        (node, state): value(samples, "jetson_admission_state", node=node, state=state)
        for node in ("orin-1", "nano-1", "nx-1", "tx-1")
        for state in ("normal", "soft", "hard", "stale")
    }
    assert states == {
        ("orin-1", "normal"): 0, ("orin-1", "soft"): 0, ("orin-1", "hard"): 1, ("orin-1", "stale"): 0,
        ("nano-1", "normal"): 1, ("nano-1", "soft"): 0, ("nano-1", "hard"): 0, ("nano-1", "stale"): 0,
        ("nx-1", "normal"): 0, ("nx-1", "soft"): 1, ("nx-1", "hard"): 0, ("nx-1", "stale"): 0,
        ("tx-1", "normal"): 0, ("tx-1", "soft"): 0, ("tx-1", "hard"): 0, ("tx-1", "stale"): 1,
    }  # fmt: skip
    assert ("jetson_admission_state", frozenset({("node", "orin-1"), ("state", "hard")})) in samples  # not a default 0
    assert value(samples, "jetson_admission_since_timestamp_seconds", node="orin-1") == SINCE.timestamp()
    assert value(samples, "jetson_admission_since_timestamp_seconds", node="tx-1") == silent.timestamp()
    assert ("jetson_admission_since_timestamp_seconds", frozenset({("node", "nano-1")})) not in samples
    assert "# TYPE jetson_admission_state gauge" in text.splitlines()
    assert "gpu-thermal" not in text  # the reason is no label
    assert value(samples, "jetson_cpu_usage_percent", node="orin-1") == 40.0
