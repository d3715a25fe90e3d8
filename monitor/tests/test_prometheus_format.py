"""GET /metrics is prometheus_client's text format: its own parser reads all of it, histograms with their buckets."""

from __future__ import annotations

import uuid

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from gateway.requestlog.record import RequestRecord
from monitor.tests.samples import make_sample

HISTOGRAMS = (
    "jetson_gateway_request_duration_seconds",
    "jetson_gateway_time_to_first_token_seconds",
    "jetson_gateway_tokens_per_second",
)


def test_it_parses_with_prometheus_clients_parser(db: None, settings: object) -> None:
    settings.MONITOR_METRICS_TOKEN = "scrape-token"  # type: ignore[attr-defined]
    model = f"gemma-{uuid.uuid4().hex[:8]}"
    for latency, ttft, speed in ((80.0, 20.0, 40.0), (1500.0, 300.0, 9.0)):
        record = RequestRecord(endpoint="/v1/chat/completions", model_used=model, status=200, latency_ms=latency,
                               ttft_ms=ttft, tokens_per_second=speed, prompt_tokens=4, completion_tokens=9)  # fmt: skip
        metrics.observe(record)
    make_sample("orin-1", cpu_percent=7.0, detail={"temperatures": {'odd "zone"\\': 40.0}})
    text = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").content.decode()

    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["jetson_gateway_requests"].type == "counter"
    assert families["jetson_gateway_tokens"].type == "counter"
    assert families["jetson_cpu_usage_percent"].type == "gauge"
    (zone,) = families["jetson_temperature_celsius"].samples
    assert zone.labels == {"node": "orin-1", "sensor": 'odd "zone"\\'} and zone.value == 40.0
    for name in HISTOGRAMS:
        assert families[name].type == "histogram"
        ours = [s for s in families[name].samples if s.labels.get("model") == model]
        buckets = {s.labels["le"]: s.value for s in ours if s.name == f"{name}_bucket"}
        (count,) = [s.value for s in ours if s.name == f"{name}_count"]
        assert count == 2
        assert len(buckets) > 5 and buckets["+Inf"] == 2
        # Cumulative, and the fast request and the slow one fall in different buckets.
        ordered = [buckets[le] for le in sorted(buckets, key=float)]
        assert ordered == sorted(ordered) and 1 in ordered and set(ordered) <= {0, 1, 2}
