"""Several gateway processes on one node share a metrics directory: any of them shows the node's sum, for good."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.test import override_settings

from gateway.models import APIKey
from tests.live import METRICS_TOKEN, database_url, start_daphne, stop_process
from tests.scrape import scrape, value

MODELS_OK = {"model": "", "endpoint": "/v1/models", "status": "200"}


@pytest.fixture
def shared_env(transactional_db: None, tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "metrics"
    directory.mkdir()
    return {"DATABASE_URL": database_url(), "MONITOR_METRICS_TOKEN": METRICS_TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(directory)}  # fmt: skip


def list_models(base_url: str, key: str, times: int) -> None:
    for _ in range(times):
        response = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert response.status_code == 200, response.text


def test_a_scrape_of_either_process_shows_the_sum_of_both(shared_env: dict[str, str]) -> None:
    _, key = APIKey.objects.create_key(name="two processes")
    first, first_url = start_daphne(shared_env)
    try:
        second, second_url = start_daphne(shared_env)
        try:
            list_models(first_url, key, 2)
            list_models(second_url, key, 3)
            assert value(scrape(first_url), "jetson_gateway_requests_total", **MODELS_OK) == 5
            assert value(scrape(second_url), "jetson_gateway_requests_total", **MODELS_OK) == 5
        finally:
            stop_process(second)
    finally:
        stop_process(first)


def test_an_exited_process_still_counts_and_no_start_clears_a_directory_in_use(shared_env: dict[str, str]) -> None:
    _, key = APIKey.objects.create_key(name="restarts")
    directory = Path(shared_env["PROMETHEUS_MULTIPROC_DIR"])
    first, first_url = start_daphne(shared_env)
    second, second_url = start_daphne(shared_env)
    try:
        list_models(first_url, key, 2)
        list_models(second_url, key, 1)
        stop_process(first)
        # The counters of a process that is gone stay in the node's sum while the node's gateway runs ...
        assert value(scrape(second_url), "jetson_gateway_requests_total", **MODELS_OK) == 3
        # ... even when another gateway process starts meanwhile.
        with override_settings(PROMETHEUS_MULTIPROC_DIR=directory):
            out = StringIO()
            call_command("clearmetrics", stdout=out)
        assert "in use by a running gateway process: kept" in out.getvalue()
        assert value(scrape(second_url), "jetson_gateway_requests_total", **MODELS_OK) == 3
    finally:
        stop_process(first)
        stop_process(second)
    # Once none runs, the next start clears what they left.
    assert list(directory.glob("*.db"))
    with override_settings(PROMETHEUS_MULTIPROC_DIR=directory):
        out = StringIO()
        call_command("clearmetrics", stdout=out)
    assert out.getvalue().startswith("Deleted ")
    assert not list(directory.glob("*.db"))
