"""GET /metrics: Prometheus text of each node's latest sample and the gateway's request counters, behind a token."""

from __future__ import annotations

import pytest
from django.test import Client

from gateway.models import RequestLog
from monitor.tests.samples import make_sample

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
    assert {
        'jetson_cpu_usage_percent{node="orin-1"} 12.5',
        'jetson_cpu_usage_percent{node="nano-1"} 3.0',
        'jetson_memory_used_bytes{node="orin-1"} 68719476736',
        'jetson_power_watts{node="orin-1"} 12.0',
        'jetson_power_rail_watts{node="orin-1",rail="VDD_GPU_SOC"} 2.412',
        'jetson_temperature_celsius{node="orin-1",sensor="cpu-thermal"} 52.6',
        'jetson_backend_up{node="orin-1",backend="http://127.0.0.1:8081",model="qwen"} 1',
        'jetson_backend_slots_busy{node="orin-1",backend="http://127.0.0.1:8081",model="qwen"} 1',
        "# TYPE jetson_cpu_usage_percent gauge",
    } <= lines(response)
    assert 'jetson_cpu_usage_percent{node="orin-1"} 99.0' not in lines(response)


def test_it_counts_gateway_requests_from_the_request_log(db: None, token: str) -> None:
    chat = "/v1/chat/completions"
    RequestLog.objects.create(
        endpoint=chat, model_used="qwen", status=200, latency_ms=100, ttft_ms=20, prompt_tokens=5, completion_tokens=7
    )
    RequestLog.objects.create(
        endpoint=chat, model_used="qwen", status=200, latency_ms=300, ttft_ms=40, prompt_tokens=3, completion_tokens=1
    )
    RequestLog.objects.create(endpoint=chat, model_used="qwen", status=503, latency_ms=None)
    RequestLog.objects.create(endpoint=chat, model_requested='bad"model', status=404, latency_ms=2)
    text = lines(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert {
        "# TYPE jetson_gateway_requests_total counter",
        f'jetson_gateway_requests_total{{model="qwen",endpoint="{chat}",status="200"}} 2',
        f'jetson_gateway_requests_total{{model="qwen",endpoint="{chat}",status="503"}} 1',
        f'jetson_gateway_requests_total{{model="bad\\"model",endpoint="{chat}",status="404"}} 1',
        "# TYPE jetson_gateway_request_duration_seconds summary",
        f'jetson_gateway_request_duration_seconds_sum{{model="qwen",endpoint="{chat}"}} 0.4',
        f'jetson_gateway_request_duration_seconds_count{{model="qwen",endpoint="{chat}"}} 2',
        f'jetson_gateway_time_to_first_token_seconds_sum{{model="qwen",endpoint="{chat}"}} 0.06',
        f'jetson_gateway_tokens_total{{kind="completion",model="qwen",endpoint="{chat}"}} 8',
    } <= text


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
