"""GET /health tells each sampled node's admission state: normal, soft or hard, why, since when, and how fresh; stale
when the node's sampler has been silent too long for its soft or hard state to hold."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from django.utils import timezone

from gateway.models import NodeAdmission
from tests.answers import answer_schema, conforms

SINCE = datetime(2026, 11, 25, 10, 42, 7, tzinfo=UTC)
SEEN = datetime(2026, 11, 25, 10, 43, 0, tzinfo=UTC)
REASON = "board power 24.8 W over the 20 W limit"
HOT = "cpu-thermal at 82 °C (limit 80 °C)"


def test_it_reports_each_nodes_admission_state(live_gateway: str, api_key: str) -> None:
    now = timezone.now()
    NodeAdmission.objects.create(node="orin-1", state="hard", reason=REASON, since=SINCE, last_seen=now)
    NodeAdmission.objects.create(node="nano-1")
    # Its sampler's latest sample is days old: what it decided then no longer holds (its supervisor admits normally).
    NodeAdmission.objects.create(node="nx-1", state="soft", reason=HOT, since=SINCE, last_seen=SEEN)
    response = httpx.get(f"{live_gateway}/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["admission"] == [
        {"node": "nano-1", "state": "normal", "reason": "", "since": None, "last_seen": None},
        {"node": "nx-1", "state": "stale", "reason": f"last decided soft: {HOT}", "since": "2026-11-25T10:43:00+00:00",
         "last_seen": "2026-11-25T10:43:00+00:00"},
        {"node": "orin-1", "state": "hard", "reason": REASON, "since": "2026-11-25T10:42:07+00:00",
         "last_seen": now.isoformat()},
    ]  # fmt: skip
    assert conforms(response.json(), answer_schema("/health")), "the OpenAPI document says otherwise"
