"""Reading /metrics in tests with prometheus_client's own parser: samples keyed by name and labels."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.live import METRICS_TOKEN

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: object) -> float:
    """A sample's value; 0 for a series not exposed yet (a counter that has not counted anything)."""
    return samples.get((name, frozenset((key, str(label)) for key, label in labels.items())), 0.0)


def scrape(base_url: str, token: str = METRICS_TOKEN) -> Samples:
    """GET /metrics of a live server, parsed."""
    response = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return parse(response.text)
