"""GET /metrics: Prometheus text of each node's latest sample and the gateway's request metrics, behind a token."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from gateway import metrics
from gateway.requestlog.record import RequestRecord
from monitor.tests.samples import make_sample
from tests.scrape import parse, value

TOKEN = "scrape-token-123"


@pytest.fixture
def token(settings: object) -> str:
    settings.MONITOR_METRICS_TOKEN = TOKEN  # type: ignore[attr-defined]
    return TOKEN


def lines(response: object) -> set[str]:
    return set(response.content.decode().splitlines())  # type: ignore[attr-defined]


def test_it_exposes_the_latest_sample_of_each_node(db: None, token: str) -> None:
    make_sample("orin-1", cpu_percent=99.0)
    make_sample(
        "orin-1",
        cpu_percent=12.5,
        ram_used=68719476736,
        power_mw=12000.0,
        detail={
            "power": {"rails": {"VDD_GPU_SOC": {"mw": 2412.0}}},
            "temperatures": {"cpu-thermal": 52.6},
            "backends": [{"url": "http://127.0.0.1:8081", "model": "qwen", "ok": True, "slots_busy": 1}],
        },
    )
    make_sample("nano-1", cpu_percent=3.0)
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE jetson_cpu_usage_percent gauge" in lines(response)
    samples = parse(response.content.decode())
    backend = {"node": "orin-1", "backend": "http://127.0.0.1:8081", "model": "qwen"}
    assert value(samples, "jetson_cpu_usage_percent", node="orin-1") == 12.5
    assert value(samples, "jetson_cpu_usage_percent", node="nano-1") == 3.0
    assert value(samples, "jetson_memory_used_bytes", node="orin-1") == 68719476736  # exact, not rounded
    assert value(samples, "jetson_power_watts", node="orin-1") == 12.0
    assert value(samples, "jetson_power_rail_watts", node="orin-1", rail="VDD_GPU_SOC") == 2.412
    assert value(samples, "jetson_temperature_celsius", node="orin-1", sensor="cpu-thermal") == 52.6
    assert value(samples, "jetson_backend_up", **backend) == 1
    assert value(samples, "jetson_backend_slots_busy", **backend) == 1
    assert [v for (name, _), v in samples.items() if name == "jetson_cpu_usage_percent"].count(99.0) == 0


def test_it_counts_gateway_requests_as_they_finish(db: None, token: str) -> None:
    chat, model, odd = "/v1/chat/completions", f"qwen-{uuid.uuid4().hex[:8]}", f'bad"mo\\del-{uuid.uuid4().hex[:8]}'
    for fields in (
        {"status": 200, "latency_ms": 100, "ttft_ms": 20, "prompt_tokens": 5, "completion_tokens": 7, "tokens_per_second": 35.0},
        {"status": 200, "latency_ms": 300, "ttft_ms": 40, "prompt_tokens": 3, "completion_tokens": 1, "tokens_per_second": 12.0},
        {"status": 503, "latency_ms": 2},
    ):  # fmt: skip
        metrics.observe(RequestRecord(endpoint=chat, model_used=model, **fields))
    metrics.observe(RequestRecord(endpoint=chat, model_used=odd, status=200, latency_ms=5))
    # A name the client made up is not a label: only models the request was routed to are.
    made_up = f"made-up-{uuid.uuid4().hex}"
    metrics.observe(RequestRecord(endpoint=f"/v1/models/{made_up}", model_requested=made_up, status=404, latency_ms=1))
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    text = response.content.decode()
    samples = parse(text)
    labels = {"model": model, "endpoint": chat}
    assert value(samples, "jetson_gateway_requests_total", status=200, **labels) == 2
    assert value(samples, "jetson_gateway_requests_total", status=503, **labels) == 1
    assert value(samples, "jetson_gateway_request_duration_seconds_count", **labels) == 3
    assert value(samples, "jetson_gateway_request_duration_seconds_sum", **labels) == pytest.approx(0.402)
    buckets = {le: value(samples, "jetson_gateway_request_duration_seconds_bucket", le=le, **labels)
               for le in ("0.05", "0.1", "0.25", "0.5", "+Inf")}  # fmt: skip
    assert buckets == {"0.05": 1, "0.1": 2, "0.25": 2, "0.5": 3, "+Inf": 3}
    assert value(samples, "jetson_gateway_time_to_first_token_seconds_count", **labels) == 2
    assert value(samples, "jetson_gateway_time_to_first_token_seconds_sum", **labels) == pytest.approx(0.06)
    assert value(samples, "jetson_gateway_tokens_per_second_count", **labels) == 2
    assert value(samples, "jetson_gateway_tokens_per_second_sum", **labels) == 47.0
    assert value(samples, "jetson_gateway_tokens_per_second_bucket", le="15.0", **labels) == 1
    assert value(samples, "jetson_gateway_tokens_per_second_bucket", le="50.0", **labels) == 2
    assert value(samples, "jetson_gateway_tokens_total", kind="prompt", **labels) == 8
    assert value(samples, "jetson_gateway_tokens_total", kind="completion", **labels) == 8
    assert value(samples, "jetson_gateway_requests_total", model=odd, endpoint=chat, status=200) == 1
    assert f'model="bad\\"mo\\\\del-{odd[-8:]}"' in text  # the library escapes quotes and backslashes
    assert value(samples, "jetson_gateway_requests_total", model="", endpoint="/v1/models/{model}", status=404) >= 1
    assert made_up not in text
    assert {"# TYPE jetson_gateway_requests_total counter", "# TYPE jetson_gateway_request_duration_seconds histogram",
            "# TYPE jetson_gateway_tokens_per_second histogram"} <= set(text.splitlines())  # fmt: skip


def test_it_refuses_a_wrong_token(db: None, token: str) -> None:
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert Client().get("/metrics").status_code == 401


def test_it_is_closed_without_a_token_setting(db: None, settings: object) -> None:
    settings.MONITOR_METRICS_TOKEN = ""  # type: ignore[attr-defined]
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_it_lets_staff_sessions_read_without_a_token(staff_client: Client, settings: object) -> None:
    settings.MONITOR_METRICS_TOKEN = ""  # type: ignore[attr-defined]
    make_sample("orin-1", cpu_percent=1.0)
    assert 'jetson_cpu_usage_percent{node="orin-1"} 1.0' in lines(staff_client.get("/metrics"))


def test_an_api_key_is_not_a_metrics_token(db: None, token: str, alice_key: str) -> None:
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {alice_key}").status_code == 401
