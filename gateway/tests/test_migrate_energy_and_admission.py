"""The migrations that move measured facts below both apps keep what was stored: each measured request-log row's
energy becomes an energy fact (and its columns go), each node's admission state becomes its admission row (and its
columns go); migrating back puts both where they were."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("gateway", "0007_supervisor_state_machine"), ("monitor", "0003_admission")]
AFTER = [("gateway", "0009_node_admission"), ("monitor", "0004_admission_below")]
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def migrate(targets: list[tuple[str, str]]) -> Apps:
    """The apps (historical models) as they are at `targets`, once there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_energy_and_admission_move_and_come_back() -> None:
    old = migrate(BEFORE)
    RequestLog, Node = old.get_model("gateway", "RequestLog"), old.get_model("monitor", "Node")
    RequestLog.objects.create(request_id="measured", created=T0, endpoint="/v1/chat/completions", status=200,
                              model_used="qwen", latency_ms=2500.0, energy_mj=12345.6, energy_net_mj=-20.0)  # fmt: skip
    RequestLog.objects.create(request_id="refused", created=T0, endpoint="/v1/chat/completions", status=503)
    Node.objects.create(name="orin-1", admission_state="hard", admission_reason="92 °C", admission_since=T0,
                        last_seen=T0)  # fmt: skip
    Node.objects.create(name="nano-1")
    try:
        new = migrate(AFTER)
        EnergyFact = new.get_model("gateway", "EnergyFact")
        [fact] = EnergyFact.objects.all()
        assert (fact.request_id, fact.model, fact.gross_mj, fact.net_mj) == ("measured", "qwen", 12345.6, 0.0)
        assert (fact.start, fact.seconds) == (T0, 2.5)
        assert "energy_mj" not in {f.name for f in new.get_model("gateway", "RequestLog")._meta.fields}
        admissions = new.get_model("gateway", "NodeAdmission").objects
        assert sorted(admissions.values_list("node", "state", "reason", "since", "last_seen")) == [
            ("nano-1", "normal", "", None, None), ("orin-1", "hard", "92 °C", T0, T0),
        ]  # fmt: skip

        back = migrate(BEFORE)
        rows = back.get_model("gateway", "RequestLog").objects
        assert sorted(rows.values_list("request_id", "energy_mj")) == [("measured", 12345.6), ("refused", None)]
        nodes = back.get_model("monitor", "Node").objects
        assert nodes.get(name="orin-1").admission_state == "hard"
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
