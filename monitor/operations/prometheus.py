"""Prometheus text for GET /metrics: each node's admission state and latest sample as gauges, managed models' states
and memory as their supervisors recorded them, and the gateway's request metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway import metrics
from gateway.node import states
from gateway.node.admission import HARD, NORMAL, SOFT, STALE
from gateway.node.models import NodeAdmission
from gateway.node.snapshot import SHOWN_STATES
from monitor.models import Node, Sample

FAMILIES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}
ADMISSION_STATES = (NORMAL, SOFT, HARD, STALE)


class Exposition:
    """Metric families in the order first added; a family's label names are those of its first sample."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def add(self, name: str, kind: str, help: str, value: object, /, **labels: object) -> None:
        if value is None:
            return
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = FAMILIES[kind](name, help, labels=list(labels))
        family.add_metric([str(label) for label in labels.values()], float(value))  # type: ignore[attr-defined,arg-type]


def _scaled(value: object, factor: float) -> float | None:
    return float(value) * factor if isinstance(value, int | float) else None


def add_sample(out: Exposition, sample: Sample) -> None:
    node = sample.node.name
    data = sample.detail
    g = "gauge"
    out.add(
        "jetson_sample_timestamp_seconds",
        g,
        "When the node's latest sample was taken.",
        sample.time.timestamp(),
        node=node,
    )
    out.add("jetson_cpu_usage_percent", g, "CPU busy, % of all cores.", sample.cpu_percent, node=node)
    for index, core in enumerate(data.get("cpu", {}).get("cores", [])):
        out.add("jetson_cpu_core_usage_percent", g, "CPU busy per core, %.", core.get("percent"), node=node, core=index)
        out.add(
            "jetson_cpu_core_frequency_hertz",
            g,
            "CPU clock per core.",
            _scaled(core.get("mhz"), 1e6),
            node=node,
            core=index,
        )
    out.add("jetson_load1", g, "1-minute load average.", sample.load_1, node=node)
    memory = data.get("memory", {})
    out.add("jetson_memory_used_bytes", g, "RAM used (total minus available).", sample.ram_used, node=node)
    out.add("jetson_memory_total_bytes", g, "RAM installed.", sample.ram_total, node=node)
    out.add("jetson_swap_used_bytes", g, "Swap used.", sample.swap_used, node=node)
    out.add("jetson_swap_total_bytes", g, "Swap size.", memory.get("swap_total"), node=node)
    out.add("jetson_gpu_memory_used_bytes", g, "GPU memory used (NvMap on Jetson).", sample.gpu_mem_used, node=node)
    gpu = data.get("gpu", {})
    out.add("jetson_gpu_usage_percent", g, "GPU load, %.", sample.gpu_percent, node=node)
    out.add("jetson_gpu_frequency_hertz", g, "GPU clock.", _scaled(gpu.get("mhz"), 1e6), node=node)
    out.add(
        "jetson_emc_frequency_hertz", g, "Memory controller (EMC) clock.", _scaled(gpu.get("emc_mhz"), 1e6), node=node
    )
    out.add("jetson_emc_usage_percent", g, "Memory controller (EMC) load, %.", gpu.get("emc_percent"), node=node)
    out.add("jetson_power_watts", g, "Total board power.", _scaled(sample.power_mw, 1e-3), node=node)
    for rail, reading in data.get("power", {}).get("rails", {}).items():
        out.add(
            "jetson_power_rail_watts",
            g,
            "Power per rail (INA3221, INA238).",
            _scaled(reading.get("mw"), 1e-3),
            node=node,
            rail=rail,
        )
    out.add("jetson_temperature_max_celsius", g, "Hottest sensor.", sample.temp_max, node=node)
    for sensor, celsius in data.get("temperatures", {}).items():
        out.add("jetson_temperature_celsius", g, "Temperature per sensor.", celsius, node=node, sensor=sensor)
    for fan, reading in data.get("fans", {}).items():
        out.add("jetson_fan_pwm_percent", g, "Fan PWM duty, %.", reading.get("pwm_percent"), node=node, fan=fan)
        out.add("jetson_fan_rpm", g, "Fan speed.", reading.get("rpm"), node=node, fan=fan)
    for disk in data.get("disks", []):
        out.add(
            "jetson_disk_used_bytes", g, "Disk space used per mount.", disk.get("used"), node=node, mount=disk["mount"]
        )
        out.add("jetson_disk_total_bytes", g, "Disk size per mount.", disk.get("total"), node=node, mount=disk["mount"])
    out.add("jetson_network_receive_bytes_per_second", g, "Network received.", sample.net_rx_bps, node=node)
    out.add("jetson_network_transmit_bytes_per_second", g, "Network sent.", sample.net_tx_bps, node=node)
    for card in data.get("gpus", []):
        labels = {"node": node, "gpu": card.get("index"), "name": card.get("name")}
        out.add("jetson_nvidia_gpu_usage_percent", g, "Discrete GPU load, %.", card.get("percent"), **labels)
        out.add(
            "jetson_nvidia_gpu_memory_used_bytes", g, "Discrete GPU memory used.", card.get("memory_used"), **labels
        )
        out.add(
            "jetson_nvidia_gpu_power_watts", g, "Discrete GPU power.", _scaled(card.get("power_mw"), 1e-3), **labels
        )
    for backend in data.get("backends", []):
        labels = {"node": node, "backend": backend.get("url"), "model": backend.get("model")}
        out.add("jetson_backend_up", g, "llama-server's /health answered 200.", int(bool(backend.get("ok"))), **labels)
        out.add("jetson_backend_slots_busy", g, "llama-server slots processing.", backend.get("slots_busy"), **labels)
        out.add("jetson_backend_slots_idle", g, "llama-server slots idle.", backend.get("slots_idle"), **labels)
        c = "counter"
        out.add(
            "jetson_backend_prompt_tokens_total",
            c,
            "Prompt tokens processed.",
            backend.get("prompt_tokens_total"),
            **labels,
        )
        out.add(
            "jetson_backend_predicted_tokens_total",
            c,
            "Tokens generated.",
            backend.get("predicted_tokens_total"),
            **labels,
        )


def add_admission(out: Exposition, admission: NodeAdmission) -> None:
    """The node's admission state as one series per state (stale: soft or hard, but its sampler is silent, so load
    is admitted normally). Its reason is free text whose figures change with every sample: as a label it would start
    a new series each time, so it stays in /health and on the dashboard."""
    current, _, since = admission.shown()
    states = ADMISSION_STATES if current in ADMISSION_STATES else (*ADMISSION_STATES, current)
    for state in states:
        out.add(
            "jetson_admission_state",
            "gauge",
            "1 for the node's admission state (normal, soft: new generation requests wait, hard: refused, stale: soft "
            "or hard but the sampler is silent, so admitted normally), 0 else.",
            int(current == state),
            node=admission.node,
            state=state,
        )
    out.add("jetson_admission_since_timestamp_seconds", "gauge", "When the node entered its admission state.",
            since and since.timestamp(), node=admission.node)  # fmt: skip


class LatestSamples:
    """A prometheus_client collector of each node's admission state and latest sample, read from the database at each
    scrape."""

    def collect(self) -> Iterator[Metric]:
        out = Exposition()
        for admission in NodeAdmission.objects.all():
            add_admission(out, admission)
        for node in Node.objects.all():
            latest = Sample.objects.filter(node=node).select_related("node").order_by("-time").first()
            if latest is not None:
                add_sample(out, latest)
        yield from out.families.values()


class ManagedModels:
    """A prometheus_client collector of each managed model's state, memory and requests, and each node's budget,
    read from what the supervisors recorded at each scrape."""

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
        saved = GaugeMetricFamily(
            "jetson_model_saved_caches", "Prompt caches a managed model has saved on disk.", labels=labels
        )
        saved_bytes = GaugeMetricFamily(
            "jetson_model_saved_cache_bytes", "Size on disk of a managed model's saved prompt caches.", labels=labels
        )
        for model in snapshot["data"]:
            names = [model["node"], model["id"]]
            for name in SHOWN_STATES:
                state.add_metric([*names, name], int(model["state"] == name))
            for family, value in ((estimated, model["memory"]["estimated_bytes"]),
                                  (measured, model["memory"]["measured_bytes"]),
                                  (in_flight, model["in_flight"]), (waiting, model["waiting"]),
                                  (saved, model["saved_caches"]), (saved_bytes, model["saved_cache_bytes"])):  # fmt: skip
                if value is not None:
                    family.add_metric(names, value)
        yield from (state, estimated, measured, in_flight, waiting, saved, saved_bytes)

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


def render() -> bytes:
    """The text exposition: a registry per scrape, so that nothing a process registered elsewhere leaks in."""
    registry = CollectorRegistry()
    registry.register(LatestSamples())
    registry.register(ManagedModels())
    metrics.add_to(registry)
    return generate_latest(registry)
