"""A request's energy reaches its log row, the logs API and its usage whichever comes first, its row or its energy
fact, even when both come after its hour's usage was stored: one rule (usage.arrived) for whatever arrives late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway import requestlog
from gateway.models import EnergyFact
from gateway.requestlog import usage
from gateway.requestlog.tests.helpers import WriterTestCase, make_fact, make_row
from monitor.energy import NodeLink

T0 = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
DAY = (T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))


def qwen(group: str) -> dict:
    return next(d for d in usage.usage(*DAY, group, "model") if d["model"] == "qwen")


class EnergyArrivingLateTestCase(WriterTestCase):
    def setUp(self) -> None:
        super().setUp()
        make_row(T0, model_used="qwen", completion_tokens=10)  # measured by nobody
        self.assertEqual(qwen("hour")["energy_j"], None)  # 10:00's usage is stored ...
        self.assertEqual(qwen("day")["energy_j"], None)

    def test_a_row_written_after_its_energy_shows_it(self) -> None:
        # ... then a long request of 10:30 ends: its node's sampler writes its energy first, its row comes after.
        make_fact("late", 8000.0, 5000.0, start=T0 + timedelta(minutes=30))
        record = requestlog.RequestRecord(endpoint="/v1/chat/completions", request_id="late",
                                          created=T0 + timedelta(minutes=30), model_used="qwen", completion_tokens=20)  # fmt: skip
        record.finish(200)
        requestlog.submit(record)
        self.assertTrue(requestlog.flush(timeout=5))
        for group in usage.GROUPS:
            self.assertEqual((qwen(group)["energy_j"], qwen(group)["tokens_per_joule"]), (8.0, 2.5))
        response = self.client.get("/api/logs?since=2026-11-05T00:00:00Z", **self.bearer(self.reader_plaintext))
        rows = {row["request_id"]: row for row in response.json()["results"]}
        self.assertEqual((rows["late"]["energy_mj"], rows["late"]["energy_net_mj"]), (8000.0, 5000.0))

    def test_an_energy_written_after_its_row_reaches_the_stored_usage(self) -> None:
        # ... then its energy arrives after its row (the readings stalled, the database was down): as the sampler
        # writes it.
        make_row(T0 + timedelta(minutes=20), request_id="long", model_used="qwen", completion_tokens=30)
        usage.forget([T0])  # the row came in time: its hour is stored with it, and no energy
        self.assertEqual((qwen("hour")["completion_tokens"], qwen("hour")["energy_j"]), (40, None))
        link = NodeLink("orin-1", None)
        link.unwritten = [EnergyFact(lease="long.1", request_id="long", node="orin-1", model="qwen", gross_mj=12000.0,
                                     source="VDD_IN", start=T0, end=T0, seconds=0.0, measured_seconds=0.0)]  # fmt: skip
        link.write()
        for group in usage.GROUPS:
            self.assertEqual((qwen(group)["energy_j"], qwen(group)["tokens_per_joule"]), (12.0, 2.5))
