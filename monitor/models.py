"""Stored metrics: the machines sampled (Node), one row per sample (Sample), per-minute rollups (Rollup), idle power.
A node's admission state is a row of its own below both apps (gateway.node.models.NodeAdmission)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import models
from django.db.models import Avg, Count, Max
from django.db.models.functions import TruncMinute
from django.utils import timezone

from gateway.node.models import NodeAdmission

# The headline figures: a typed column on Sample, an average and a maximum on Rollup, a series in the history API.
METRICS: dict[str, str] = {
    "cpu_percent": "CPU busy, % of all cores",
    "load_1": "1-minute load average",
    "ram_used": "RAM used, bytes",
    "swap_used": "swap used, bytes",
    "gpu_percent": "GPU load, %",
    "gpu_mem_used": "GPU shared memory (NvMap) or discrete GPU memory used, bytes",
    "power_mw": "total board power, mW",
    "temp_max": "hottest temperature sensor, °C",
    "net_rx_bps": "network received, bytes/s",
    "net_tx_bps": "network sent, bytes/s",
    "slots_busy": "llama-server slots processing a request",
}


class Node(models.Model):
    """A machine running a sampler; facts that rarely change live here, not on every sample."""

    name = models.CharField(max_length=100, unique=True)
    board_model = models.CharField(max_length=200, blank=True)
    l4t_release = models.CharField("L4T release", max_length=50, blank=True)
    power_mode = models.CharField(max_length=100, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def to_dict(self, admission: NodeAdmission | None = None) -> dict:
        """The node as /api/nodes lists it, with its admission state (its own row; normal without one)."""
        return {
            "name": self.name,
            "board_model": self.board_model,
            "l4t_release": self.l4t_release,
            "power_mode": self.power_mode,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "admission": (admission or NodeAdmission(node=self.name)).to_dict(),
        }


class IdlePowerManager(models.Manager["IdlePower"]):
    def recall(self, node: Node, power_mode: str) -> tuple[float, float] | None:
        """The stored idle power of a node in a power mode: (mW, seconds it was measured over), or None."""
        row = self.filter(node=node, power_mode=power_mode).values_list("mw", "seconds").first()
        return (row[0], row[1]) if row else None

    def remember(self, node: Node, power_mode: str, mw: float, seconds: float) -> None:
        self.update_or_create(
            node=node, power_mode=power_mode, defaults={"mw": mw, "seconds": seconds, "updated": timezone.now()}
        )


class IdlePower(models.Model):
    """A node's board power with no generation request in flight, per power mode: the base a request's net
    energy is counted above. The power sampler measures it and keeps it here across restarts."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="idle_powers")
    power_mode = models.CharField(max_length=100, blank=True)
    mw = models.FloatField(help_text="Average board power while idle, mW.")
    seconds = models.FloatField(help_text="Idle time the average stands on (at most the averaging window).")
    updated = models.DateTimeField(default=timezone.now)

    objects = IdlePowerManager()

    class Meta:
        ordering = ["node", "power_mode"]
        constraints = [models.UniqueConstraint(fields=["node", "power_mode"], name="unique_idle_power_per_mode")]

    def __str__(self) -> str:
        return f"{self.node_id} {self.power_mode or '-'}: {self.mw:.0f} mW"


class Sample(models.Model):
    """One sample of one node: headline figures as columns, per-core/zone/rail detail as JSON."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="samples")
    time = models.DateTimeField(default=timezone.now)
    cpu_percent = models.FloatField(null=True, blank=True)
    load_1 = models.FloatField(null=True, blank=True)
    ram_used = models.BigIntegerField(null=True, blank=True)
    ram_total = models.BigIntegerField(null=True, blank=True)
    swap_used = models.BigIntegerField(null=True, blank=True)
    gpu_percent = models.FloatField(null=True, blank=True)
    gpu_mem_used = models.BigIntegerField(null=True, blank=True)
    power_mw = models.FloatField(null=True, blank=True)
    temp_max = models.FloatField(null=True, blank=True)
    net_rx_bps = models.FloatField(null=True, blank=True)
    net_tx_bps = models.FloatField(null=True, blank=True)
    slots_busy = models.PositiveIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["node", "time"])]

    def __str__(self) -> str:
        return f"{self.node_id} {self.time:%Y-%m-%d %H:%M:%S}"

    def to_dict(self) -> dict:
        """The sample as GET /system/stats returns it and the sampler publishes it."""
        summary = {name: getattr(self, name) for name in METRICS}
        summary["ram_total"] = self.ram_total
        return {
            "node": self.node.name,
            "time": self.time.isoformat(),
            "board": {
                "model": self.node.board_model,
                "l4t_release": self.node.l4t_release,
                "power_mode": self.node.power_mode,
            },
            "summary": summary,
            **self.detail,
        }


class Rollup(models.Model):
    """The average and maximum of each headline figure over one minute of one node's samples."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="rollups")
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(help_text="Samples in this minute.")
    cpu_percent_avg = models.FloatField(null=True)
    cpu_percent_max = models.FloatField(null=True)
    load_1_avg = models.FloatField(null=True)
    load_1_max = models.FloatField(null=True)
    ram_used_avg = models.FloatField(null=True)
    ram_used_max = models.FloatField(null=True)
    swap_used_avg = models.FloatField(null=True)
    swap_used_max = models.FloatField(null=True)
    gpu_percent_avg = models.FloatField(null=True)
    gpu_percent_max = models.FloatField(null=True)
    gpu_mem_used_avg = models.FloatField(null=True)
    gpu_mem_used_max = models.FloatField(null=True)
    power_mw_avg = models.FloatField(null=True)
    power_mw_max = models.FloatField(null=True)
    temp_max_avg = models.FloatField(null=True)
    temp_max_max = models.FloatField(null=True)
    net_rx_bps_avg = models.FloatField(null=True)
    net_rx_bps_max = models.FloatField(null=True)
    net_tx_bps_avg = models.FloatField(null=True)
    net_tx_bps_max = models.FloatField(null=True)
    slots_busy_avg = models.FloatField(null=True)
    slots_busy_max = models.FloatField(null=True)

    class Meta:
        ordering = ["node", "minute"]
        constraints = [models.UniqueConstraint(fields=["node", "minute"], name="unique_rollup_per_node_minute")]

    def __str__(self) -> str:
        return f"{self.node_id} {self.minute:%Y-%m-%d %H:%M}"


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def roll_up(now: datetime, node: Node | None = None) -> int:
    """Roll complete minutes of raw samples into Rollup rows (each minute once); the number of rows made."""
    # Leave the last minute alone: other nodes' clocks drift and their samples may still be on the way.
    cutoff = _floor_minute(now) - timedelta(minutes=1)
    aggregates: dict[str, object] = {"count": Count("id")}
    for name in METRICS:
        aggregates[f"{name}_avg"] = Avg(name)
        aggregates[f"{name}_max"] = Max(name)
    made = 0
    for each in [node] if node else Node.objects.all():
        last = Rollup.objects.filter(node=each).aggregate(last=Max("minute"))["last"]
        samples = Sample.objects.filter(node=each, time__lt=cutoff)
        if last is not None:
            samples = samples.filter(time__gte=last + timedelta(minutes=1))
        rows = (
            samples.annotate(bucket=TruncMinute("time", tzinfo=UTC))
            .values("bucket")
            .annotate(**aggregates)
            .order_by("bucket")
        )
        rollups = [Rollup(node=each, minute=row.pop("bucket"), **row) for row in rows]
        # Another process (the rollup command beside a sampler) may have made the same minutes meanwhile.
        Rollup.objects.bulk_create(rollups, ignore_conflicts=True)
        made += len(rollups)
    return made


def prune(now: datetime, raw_hours: float, rollup_days: float) -> tuple[int, int]:
    """Delete raw samples and rollups past their retention; the numbers of each deleted."""
    samples, _ = Sample.objects.filter(time__lt=now - timedelta(hours=raw_hours)).delete()
    rollups, _ = Rollup.objects.filter(minute__lt=now - timedelta(days=rollup_days)).delete()
    return samples, rollups


MAX_POINTS = 500  # enough for a chart's width; more only costs bandwidth


def series(node: Node, metric: str, since: datetime, now: datetime, step: float, raw_hours: float) -> dict:
    """A downsampled series of one headline figure: raw samples within their retention, else minute rollups."""
    step = max(step, (now - since).total_seconds() / MAX_POINTS, 1.0)
    # bucket start (epoch seconds) -> [sum of averages x weights, weight, maximum]
    buckets: dict[int, list[float]] = {}

    def add(moment: datetime, average: float, maximum: float, weight: int) -> None:
        start = int(moment.timestamp() // step * step)
        bucket = buckets.setdefault(start, [0.0, 0, maximum])
        bucket[0] += average * weight
        bucket[1] += weight
        bucket[2] = max(bucket[2], maximum)

    raw_since = since
    if since < now - timedelta(hours=raw_hours):
        source = "rollup"
        step = max(step, 60.0)
        rollups = Rollup.objects.filter(node=node, minute__gte=since, **{f"{metric}_avg__isnull": False})
        last = None
        for minute, average, maximum, count in rollups.order_by("minute").values_list(
            "minute", f"{metric}_avg", f"{metric}_max", "count"
        ):
            add(minute, average, maximum, count)
            last = minute
        # The newest minutes are not rolled up yet: take them from the raw samples so the chart reaches now.
        raw_since = last + timedelta(minutes=1) if last else now - timedelta(hours=raw_hours)
    else:
        source = "raw"
    samples = Sample.objects.filter(node=node, time__gte=raw_since, **{f"{metric}__isnull": False})
    for moment, value in samples.order_by("time").values_list("time", metric):
        add(moment, value, value, 1)
    points = [[start, round(total / weight, 3), maximum] for start, (total, weight, maximum) in sorted(buckets.items())]
    return {"node": node.name, "metric": metric, "source": source, "step": step, "points": points}
