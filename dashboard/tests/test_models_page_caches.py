"""The Models page has a prompt-cache table (hit rate, prefill saved, saved caches per model), filled by its script
from /api/usage and the managed models' states, which a user without the logs scope may read as a dashboard user."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from gateway.requestlog.tests.helpers import make_row


def test_the_models_page_has_a_prompt_cache_table(client: Client, carol) -> None:
    client.force_login(carol)
    html = client.get(reverse("dashboard:models")).content.decode()
    table = re.search(r'<table id="caches-table">(.*?)</table>', html, re.S)
    assert table is not None
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table.group(1))
    assert headers == ["Model", "Hit rate, last day", "Restored · live · none", "Cached tokens", "Prefill saved",
                       "Saved caches"]  # fmt: skip


def test_its_user_reads_the_figures_the_table_shows(client: Client, carol) -> None:
    now = timezone.now()
    make_row(now, model_used="qwen", prompt_cache="live", prompt_tokens=200, cached_tokens=150, prompt_ms=25.0)
    make_row(now, model_used="qwen", prompt_cache="none", prompt_tokens=100, cached_tokens=0, prompt_ms=50.0)
    client.force_login(carol)
    response = client.get("/api/usage?group=hour&by=model")
    assert response.status_code == 200
    [bucket] = response.json()["data"]
    # 150 tokens read in 75 ms: the 150 cached saved 75 ms.
    assert bucket["prompt_cache"] == {"restored": 0, "live": 1, "none": 1, "hit_rate": 0.5, "cached_tokens": 150,
                                      "saved_ms": 75.0}  # fmt: skip
