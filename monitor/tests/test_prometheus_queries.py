"""A scrape of /metrics reads no request-log row: its cost does not grow with the table."""

from __future__ import annotations

import uuid

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateway import metrics
from gateway.requestlog.record import RequestRecord
from gateway.requestlog.tests.helpers import make_row
from monitor.tests.samples import make_sample
from tests.scrape import parse, value


def test_it_answers_without_a_query_on_the_request_log(db: None, settings: object) -> None:
    settings.MONITOR_METRICS_TOKEN = "scrape-token"  # type: ignore[attr-defined]
    model = f"qwen-{uuid.uuid4().hex[:8]}"
    for n in range(50):
        make_row(timezone.now(), request_id=f"r{n}", model_used=model)
    metrics.observe(RequestRecord(endpoint="/v1/chat/completions", model_used=model, status=200, latency_ms=10))
    make_sample("orin-1", cpu_percent=5.0)
    with CaptureQueriesContext(connection) as queries:
        response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token")
    assert response.status_code == 200
    samples = parse(response.content.decode())
    # It did answer for the requests (from the counters: 1, not the 50 rows) and for the node ...
    labels = {"model": model, "endpoint": "/v1/chat/completions", "status": 200}
    assert value(samples, "jetson_gateway_requests_total", **labels) == 1
    assert value(samples, "jetson_cpu_usage_percent", node="orin-1") == 5.0
    # ... and the request log was not read.
    assert [q["sql"] for q in queries if "gateway_requestlog" in q["sql"]] == []
    # the nodes' admission states, the nodes, each node's latest sample, the managed models (with their states), the
    # supervisors
    assert len(queries) <= 5
