"""GET /api/usage: energy (J) and completion tokens per joule per bucket, from the rows the node's sampler measured,
kept in the stored buckets like every other figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from gateway.models import UsageBucket
from gateway.requestlog import usage
from gateway.requestlog.tests.helpers import LogsTestCase, make_row, today_both_ways

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
QUERY = "since=2026-11-02T00:00:00Z&until=2026-11-03T00:00:00Z"


class UsageEnergyTestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        # 10:xx, qwen: 30 tokens over 12 J and 10 tokens over 4 J; one row without an energy (an external backend)
        # whose 100 tokens must not count; an embedding request with 0.5 J and no completion tokens.
        make_row(T0 + timedelta(minutes=1), model_used="qwen", completion_tokens=30, energy_mj=12000.0,
                 energy_net_mj=7000.0, api_key=self.client_key)  # fmt: skip
        make_row(T0 + timedelta(minutes=2), model_used="qwen", completion_tokens=10, energy_mj=4000.0,
                 api_key=self.reader)  # fmt: skip
        make_row(T0 + timedelta(minutes=3), model_used="qwen", completion_tokens=100, api_key=self.client_key)
        make_row(T0 + timedelta(minutes=4), model_used="qwen", endpoint="/v1/embeddings", prompt_tokens=8,
                 energy_mj=500.0, api_key=self.client_key)  # fmt: skip
        # 11:xx, gemma: served by a node without a power sensor, so no energy at all.
        make_row(T0 + timedelta(hours=1), model_used="gemma", completion_tokens=5, api_key=self.reader)
        # 11:xx, qwen again: 9 tokens over 3 J.
        make_row(T0 + timedelta(hours=1, minutes=1), model_used="qwen", completion_tokens=9, energy_mj=3000.0,
                 api_key=self.reader)  # fmt: skip

    def usage(self, query: str) -> list[dict]:
        response = self.client.get(f"/api/usage?{query}", **self.bearer(self.reader_plaintext))
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()["data"]

    def test_it_gives_energy_and_tokens_per_joule_per_model_and_hour(self) -> None:
        data = {(d["bucket"][11:13], d["model"]): d for d in self.usage(f"group=hour&by=model&{QUERY}")}
        qwen = data[("10", "qwen")]
        self.assertEqual(qwen["energy_j"], 16.5)
        self.assertEqual(qwen["completion_tokens"], 140)  # every row's tokens ...
        self.assertEqual(qwen["tokens_per_joule"], round(40 / 16.5, 4))  # ... but only measured rows' per joule
        self.assertEqual(data[("11", "qwen")]["tokens_per_joule"], 3.0)
        gemma = data[("11", "gemma")]
        self.assertEqual((gemma["energy_j"], gemma["tokens_per_joule"]), (None, None))  # unknown, never zero

    def test_it_gives_them_per_key_and_day(self) -> None:
        data = {d["key_name"]: d for d in self.usage(f"group=day&by=key&{QUERY}")}
        self.assertEqual(data["client"]["energy_j"], 12.5)
        self.assertEqual(data["client"]["tokens_per_joule"], round(30 / 12.5, 4))
        self.assertEqual(data["reader"]["energy_j"], 7.0)
        self.assertEqual(data["reader"]["tokens_per_joule"], round(19 / 7.0, 4))

    def test_it_keeps_them_in_the_stored_buckets(self) -> None:
        first = self.usage(f"group=hour&by=model&{QUERY}")
        stored = UsageBucket.objects.get(group="hour", by="model", start=T0, who="qwen")
        self.assertEqual((stored.energy_mj, stored.energy_tokens), (16500.0, 40))
        total = UsageBucket.objects.get(group="hour", by="model", start=T0, who=usage.TOTAL)
        self.assertEqual((total.energy_mj, total.energy_tokens), (16500.0, 40))
        # The second answer comes from the store (a row behind its back is not seen) and says the same.
        make_row(T0 + timedelta(minutes=5), model_used="qwen", completion_tokens=1, energy_mj=1.0)
        self.assertEqual(self.usage(f"group=hour&by=model&{QUERY}"), first)

    def test_today_adds_its_hours_energy_up_like_its_rows(self) -> None:
        now = timezone.now()
        for k in range(9):
            make_row(now - timedelta(minutes=23 * k), model_used="qwen" if k % 3 else "gemma", completion_tokens=k,
                     energy_mj=250.0 * k if k % 2 else None, api_key=self.reader if k % 2 else None)  # fmt: skip
        for by in usage.BY:
            answered, direct = today_both_ways(by)
            self.assertEqual(answered, direct)
            self.assertAlmostEqual(sum(d["energy_j"] or 0 for d in direct), (250 + 750 + 1250 + 1750) / 1000)
