"""GET /api/usage: requests, errors, tokens, average and p95 latency per hour or day, by model or by key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.requestlog import usage
from gateway.requestlog.tests.helpers import LogsTestCase, make_row

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
QUERY = "since=2026-11-02T00:00:00Z&until=2026-11-03T00:00:00Z"


class UsageTestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        # 10:00 to 10:59: qwen 20 requests with latencies 10, 20, ... 200 ms, the last two failing.
        for n in range(1, 21):
            make_row(T0 + timedelta(minutes=n), model_used="qwen", latency_ms=n * 10.0, status=500 if n > 18 else 200,
                     prompt_tokens=3, completion_tokens=5, api_key=self.client_key)  # fmt: skip
        # 11:xx: one gemma request, and one for an unknown model (no model used, no latency).
        make_row(T0 + timedelta(hours=1, minutes=5), model_used="gemma", latency_ms=42.0, api_key=self.reader)
        make_row(T0 + timedelta(hours=1, minutes=6), model_requested="nope", status=404)
        make_row(T0 - timedelta(days=2), model_used="qwen", latency_ms=1.0)  # outside the range

    def usage(self, query: str) -> dict:
        response = self.client.get(f"/api/usage?{query}", **self.bearer(self.reader_plaintext))
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()

    def test_it_aggregates_by_model_per_hour(self) -> None:
        data = self.usage(f"group=hour&by=model&{QUERY}")["data"]
        self.assertEqual([(d["bucket"], d["model"]) for d in data], [
            ("2026-11-02T10:00:00Z", "qwen"), ("2026-11-02T11:00:00Z", "gemma"), ("2026-11-02T11:00:00Z", "nope"),
        ])  # fmt: skip
        qwen = data[0]
        self.assertEqual((qwen["requests"], qwen["errors"]), (20, 2))
        self.assertEqual((qwen["prompt_tokens"], qwen["completion_tokens"]), (60, 100))
        self.assertEqual(qwen["avg_latency_ms"], 105.0)
        # percentile_cont: rank 0.95 * 19 = 18.05, so 190 + 0.05 * (200 - 190)
        self.assertEqual(qwen["p95_latency_ms"], 190.5)
        nope = data[2]
        self.assertEqual((nope["requests"], nope["errors"], nope["p95_latency_ms"]), (1, 1, None))

    def test_it_aggregates_by_key_per_day(self) -> None:
        data = self.usage(f"group=day&by=key&{QUERY}")["data"]
        by_key = {d["key_prefix"]: d for d in data}
        self.assertEqual(set(by_key), {self.client_key.prefix, self.reader.prefix, None})
        self.assertEqual(by_key[self.client_key.prefix]["requests"], 20)
        self.assertEqual(by_key[self.client_key.prefix]["key_name"], "client")
        self.assertEqual(by_key[self.reader.prefix]["p95_latency_ms"], 42.0)
        self.assertTrue(all(d["bucket"] == "2026-11-02T00:00:00Z" for d in data))

    def test_it_defaults_to_the_last_day_by_model(self) -> None:
        body = self.usage("")
        self.assertEqual((body["group"], body["by"]), ("hour", "model"))
        self.assertEqual(body["data"], [])  # the rows above are in the past

    def test_it_rejects_bad_parameters(self) -> None:
        for query, param in [("group=week", "group"), ("by=user", "by"), ("since=2026-11-03&until=2026-11-02", "since"),
                             ("group=hour&since=2020-01-01&until=2026-01-01", "since")]:  # fmt: skip
            response = self.client.get(f"/api/usage?{query}", **self.bearer(self.reader_plaintext))
            self.assertEqual(response.status_code, 400, query)
            self.assertEqual(response.json()["error"]["param"], param)

    def test_it_needs_the_logs_scope(self) -> None:
        self.assertEqual(self.client.get("/api/usage", **self.bearer(self.client_plaintext)).status_code, 403)

    def test_percentile_interpolates_like_postgresql(self) -> None:
        self.assertEqual(usage.percentile([1.0], 0.95), 1.0)
        self.assertEqual(usage.percentile([1.0, 2.0], 0.5), 1.5)
        self.assertIsNone(usage.percentile([], 0.95))
