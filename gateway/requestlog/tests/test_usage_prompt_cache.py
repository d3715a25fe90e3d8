"""GET /api/usage: each bucket's prompt-cache block (requests by source, hit rate, cached tokens, prefill time saved
at the bucket's reading time per token), kept in the stored buckets like every other figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from gateway.models import UsageBucket
from gateway.requestlog import usage
from gateway.requestlog.tests.helpers import LogsTestCase, make_row, today_both_ways

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
QUERY = "since=2026-11-02T00:00:00Z&until=2026-11-03T00:00:00Z"
NOTHING_SAID = {"restored": 0, "live": 0, "none": 0, "hit_rate": None, "cached_tokens": 0, "saved_ms": None}


class UsagePromptCacheTestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        # 10:xx, qwen: one cache restored, one reused, one prompt read from scratch: 500 tokens read in 250 ms, so
        # 0.5 ms a token, and 1300 tokens cached. A fourth row whose backend said nothing counts for none of it.
        for minute, (source, prompt, cached, ms) in enumerate(
            [("restored", 1000, 900, 50.0), ("live", 500, 400, 50.0), ("none", 300, 0, 150.0), ("", 50, None, None)]
        ):
            make_row(T0 + timedelta(minutes=minute), model_used="qwen", prompt_cache=source, prompt_tokens=prompt,
                     cached_tokens=cached, prompt_ms=ms, api_key=self.client_key)  # fmt: skip
        # 11:xx, gemma: read from scratch, but its backend gave no reading time: no price for a token.
        make_row(T0 + timedelta(hours=1), model_used="gemma", prompt_cache="none", prompt_tokens=40, cached_tokens=0,
                 api_key=self.reader)  # fmt: skip
        # 11:xx, phi: a backend that says nothing about caches.
        make_row(T0 + timedelta(hours=1, minutes=1), model_used="phi", prompt_tokens=20, api_key=self.reader)

    def usage(self, query: str) -> list[dict]:
        response = self.client.get(f"/api/usage?{query}", **self.bearer(self.reader_plaintext))
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()["data"]

    def test_it_gives_hit_rate_and_saved_prefill_per_model_and_hour(self) -> None:
        data = {(d["bucket"][11:13], d["model"]): d["prompt_cache"] for d in self.usage(f"group=hour&by=model&{QUERY}")}
        self.assertEqual(
            data[("10", "qwen")],
            {"restored": 1, "live": 1, "none": 1, "hit_rate": 0.6667, "cached_tokens": 1300, "saved_ms": 650.0},
        )
        self.assertEqual(data[("11", "gemma")], {**NOTHING_SAID, "none": 1, "hit_rate": 0.0})
        self.assertEqual(data[("11", "phi")], NOTHING_SAID)

    def test_it_gives_them_per_key_and_day(self) -> None:
        data = {d["key_name"]: d["prompt_cache"] for d in self.usage(f"group=day&by=key&{QUERY}")}
        self.assertEqual(data["client"]["hit_rate"], 0.6667)
        self.assertEqual(data["client"]["saved_ms"], 650.0)
        self.assertEqual(data["reader"], {**NOTHING_SAID, "none": 1, "hit_rate": 0.0})

    def test_it_keeps_the_sums_in_the_stored_buckets(self) -> None:
        first = self.usage(f"group=hour&by=model&{QUERY}")
        stored = UsageBucket.objects.get(group="hour", by="model", start=T0, who="qwen")
        figures = (stored.cache_restored, stored.cache_live, stored.cache_none, stored.cached_tokens, stored.read_ms,
                   stored.read_tokens)  # fmt: skip
        self.assertEqual(figures, (1, 1, 1, 1300, 250.0, 500))
        total = UsageBucket.objects.get(group="hour", by="model", start=T0 + timedelta(hours=1), who=usage.TOTAL)
        self.assertEqual((total.cache_none, total.cached_tokens, total.read_tokens), (1, 0, 0))
        # The second answer comes from the store (a row behind its back is not seen) and says the same.
        make_row(T0 + timedelta(minutes=5), model_used="qwen", prompt_cache="live", cached_tokens=10)
        self.assertEqual(self.usage(f"group=hour&by=model&{QUERY}"), first)

    def test_today_adds_its_hours_up_like_its_rows(self) -> None:
        now = timezone.now()
        for k in range(9):
            source = usage.CACHE_SOURCES[k % 3]
            make_row(now - timedelta(minutes=23 * k), model_used="qwen" if k % 2 else "gemma", prompt_cache=source,
                     prompt_tokens=100 * (k + 1), cached_tokens=0 if source == "none" else 10 * k,
                     prompt_ms=7.0 * k if k % 4 else None, api_key=self.reader if k % 2 else None)  # fmt: skip
        for by in usage.BY:
            answered, direct = today_both_ways(by)
            self.assertEqual(answered, direct)
            self.assertEqual(sum(d["prompt_cache"]["cached_tokens"] for d in direct), 10 * (1 + 3 + 4 + 6 + 7))
