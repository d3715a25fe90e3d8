"""jetson_gateway_energy_joules_total{model}: the sampler's process counts each measured request's energy into a
metrics directory of its own, which a scrape of the gateway sums with the gateway processes' files, which a gateway
start never clears, and which the next sampler clears as it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings
from prometheus_client import CollectorRegistry, generate_latest

from gateway import metrics
from tests.live import ROOT
from tests.scrape import parse, value

# What the sampler does as it fills rows in: count, then keep running (holding the directory) until told to stop.
SAMPLER = """
import sys, django
django.setup()
from gateway import metrics
for model, joules in [("qwen", 12.5), ("qwen", 0.25), ("gemma", 3.0), ("gemma", None), ("gemma", -1.0)]:
    metrics.count_energy(model, joules)
print("counted", flush=True)
sys.stdin.readline()
"""


def scraped(directory: Path) -> dict:
    registry = CollectorRegistry()
    with override_settings(PROMETHEUS_MULTIPROC_DIR=directory):
        metrics.add_to(registry)
    return parse(generate_latest(registry).decode())


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    return path


def test_it_counts_joules_per_model_from_another_process_and_keeps_them(directory: Path) -> None:
    sampler = subprocess.Popen(
        [sys.executable, "-c", SAMPLER],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "jetsonsite.settings", "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sampler.stdout is not None and sampler.stdout.readline().strip() == "counted"
        samples = scraped(directory)
        assert value(samples, "jetson_gateway_energy_joules_total", model="qwen") == 12.75
        assert value(samples, "jetson_gateway_energy_joules_total", model="gemma") == 3.0  # nothing else counted
        # A gateway starting meanwhile clears its own directory and leaves the sampler's alone, and a second sampler
        # starting beside this one clears nothing: the counter never falls.
        with override_settings(PROMETHEUS_MULTIPROC_DIR=directory):
            assert metrics.clear_directory() == 0
            assert metrics.clear_directory(metrics.sampler_directory()) is None
        assert value(scraped(directory), "jetson_gateway_energy_joules_total", model="qwen") == 12.75
    finally:
        sampler.communicate("stop\n", timeout=30)
    assert sampler.returncode == 0
    # Once the sampler has exited, its counts stay in the sum, through gateway starts, until the next sampler starts.
    with override_settings(PROMETHEUS_MULTIPROC_DIR=directory):
        metrics.clear_directory()
    assert value(scraped(directory), "jetson_gateway_energy_joules_total", model="qwen") == 12.75
    with override_settings(PROMETHEUS_MULTIPROC_DIR=directory):
        assert metrics.clear_directory(metrics.sampler_directory()) == 1
    assert value(scraped(directory), "jetson_gateway_energy_joules_total", model="qwen") == 0
