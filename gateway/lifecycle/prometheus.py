"""Managed models in GET /metrics: state, memory and requests per model, and each node's budget, as gauges read
from what the supervisors recorded (a prometheus_client collector that monitor.prometheus registers)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from gateway.node import states
from gateway.node.snapshot import SHOWN_STATES


class ManagedModels:
    def collect(self) -> Iterator[Metric]:
        snapshot = states.snapshot()
        labels = ["node", "model"]
        state = GaugeMetricFamily(
            "jetson_model_state",
            "1 for the managed model's current state (stopped, starting, ready, stopping, failed; unknown while its "
            "supervisor is gone), 0 for the others.",
            labels=[*labels, "state"],
        )
        estimated = GaugeMetricFamily(
            "jetson_model_memory_estimated_bytes", "Memory a managed model needs, from its GGUF header.", labels=labels
        )
        measured = GaugeMetricFamily(
            "jetson_model_memory_measured_bytes", "Memory a managed model was seen using (RSS + GPU buffers).",
            labels=labels,
        )  # fmt: skip
        in_flight = GaugeMetricFamily(
            "jetson_model_requests_in_flight", "Requests a managed model serves.", labels=labels
        )
        waiting = GaugeMetricFamily(
            "jetson_model_requests_waiting", "Requests waiting for a managed model to load.", labels=labels
        )
        for model in snapshot["data"]:
            names = [model["node"], model["id"]]
            for name in SHOWN_STATES:
                state.add_metric([*names, name], int(model["state"] == name))
            for family, value in ((estimated, model["memory"]["estimated_bytes"]),
                                  (measured, model["memory"]["measured_bytes"]),
                                  (in_flight, model["in_flight"]), (waiting, model["waiting"])):  # fmt: skip
                if value is not None:
                    family.add_metric(names, value)
        yield from (state, estimated, measured, in_flight, waiting)

        budget = GaugeMetricFamily("jetson_model_budget_bytes", "Memory the node's supervisor may fill with models.",
                                   labels=["node"])  # fmt: skip
        used = GaugeMetricFamily(
            "jetson_model_budget_used_bytes", "Memory the node's running models hold (measured, else estimated).",
            labels=["node"],
        )  # fmt: skip
        up = GaugeMetricFamily(
            "jetson_model_supervisor_up", "1 when the node's supervisor wrote a heartbeat within 20 s.", labels=["node"]
        )
        for node in snapshot["nodes"]:
            if node["budget"]["total_bytes"] is not None:
                budget.add_metric([node["node"]], node["budget"]["total_bytes"])
            used.add_metric([node["node"]], node["budget"]["used_bytes"])
            up.add_metric([node["node"]], int(node["supervisor"]["alive"]))
        yield from (budget, used, up)
