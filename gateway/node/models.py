"""Facts a node's sampler measures, stored below both apps (registered under the gateway app by gateway.models): the
monitor writes them, the gateway reads them. Each is its sampler's own row, never a column of someone else's."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from gateway.node.admission import HARD, NORMAL, SOFT, STALE


class EnergyFact(models.Model):
    """The energy of one lease (the time a request held a managed model), written once by the node's sampler as soon
    as its power readings cover the lease: its share of the board's energy, shared at each instant among the
    generation requests in flight then. A request has one per lease (usually one); readers sum them by request id.

    The shares are computed on the node's monotonic clock (the supervisor's and the sampler's, one host); `start`
    and `end` are that span turned into wall-clock times when the fact is written, for display only."""

    lease = models.CharField(max_length=64, unique=True, help_text="<request id>.<n>, as the supervisor named it.")
    request_id = models.CharField(max_length=32, db_index=True)
    node = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    gross_mj = models.FloatField("energy (mJ)", help_text="Its share of the board's energy over the lease.")
    net_mj = models.FloatField(
        "net energy (mJ)", null=True, blank=True,
        help_text="The same above the node's idle power (never negative); empty while the idle power is unknown.",
    )  # fmt: skip
    source = models.CharField(max_length=200, help_text="What the board's power was read from, e.g. VDD_IN.")
    start = models.DateTimeField()
    end = models.DateTimeField()
    seconds = models.FloatField(help_text="The lease's length, on the node's monotonic clock.")
    measured_seconds = models.FloatField(
        help_text="Of which the power was read at least every few seconds. Less than `seconds` when readings stalled "
        "(a gap bridged in a straight line) or stopped (energy counted up to the last reading), or when the "
        "sampler started during the lease (counted from then on)."
    )
    written = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "energy fact"
        ordering = ["-start"]

    def __str__(self) -> str:
        return f"{self.lease}: {self.gross_mj:.0f} mJ"


class NodeAdmissionManager(models.Manager["NodeAdmission"]):
    def heard_from(self, node: str, when: datetime) -> None:
        """The node's sampler took a sample: its decision still holds (one row per sampled node, normal at first)."""
        if not self.filter(node=node).update(last_seen=when):
            self.get_or_create(node=node, defaults={"last_seen": when})

    def decided(self, node: str, state: str, reason: str, when: datetime) -> None:
        self.update_or_create(node=node, defaults={"state": state, "reason": reason, "since": when})


class NodeAdmission(models.Model):
    """A node's admission by heat and power (monitor.admission) as its sampler last decided it: what /health,
    /api/nodes, Prometheus and the dashboard show. The sampler writes it; its supervisor is told directly."""

    node = models.CharField(max_length=100, unique=True)
    state = models.CharField(max_length=10, default=NORMAL)
    reason = models.CharField(max_length=300, blank=True)
    since = models.DateTimeField(null=True, blank=True, help_text="When the sampler decided this state.")
    last_seen = models.DateTimeField(null=True, blank=True, help_text="The sampler's latest sample.")

    objects = NodeAdmissionManager()

    class Meta:
        ordering = ["node"]

    def __str__(self) -> str:
        return f"{self.node}: {self.state}"

    def shown(self) -> tuple[str, str, datetime | None]:
        """(state, reason, since) as every reader shows them: as the sampler last decided them, or stale when that was
        soft or hard and the sampler has been silent (no sample) for longer than ADMISSION_STALE_SECONDS, since the
        node's supervisor then admits load normally; a stale state is dated from the sampler's last sample."""
        if self.state in (SOFT, HARD) and self.sampler_silent():
            decided = ": ".join(filter(None, (self.state, self.reason)))
            return STALE, f"last decided {decided}", self.last_seen
        return self.state, self.reason, self.since

    def to_dict(self) -> dict:
        """The admission as /health, /api/nodes and the dashboard's banner show it."""
        state, reason, since = self.shown()
        return {"state": state, "reason": reason, "since": since and since.isoformat()}

    def sampler_silent(self) -> bool:
        """No sample for longer than ADMISSION_STALE_SECONDS: the sample loop stores one every MONITOR_INTERVAL."""
        stale_after = timedelta(seconds=settings.ADMISSION_STALE_SECONDS)
        return self.last_seen is None or timezone.now() - self.last_seen > stale_after
