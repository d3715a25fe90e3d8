"""The sampler's link to its node's supervisor: energy per request in, admission out.

The supervisor tells the sampler every change in the leases in flight on the node (the power sampler's fair shares
need the generation requests at their exact time; its idle power needs to know when nothing at all runs) and the
start and end of every generation lease that ended; as soon as the power readings cover a lease, the sampler writes
its share of the board's energy as an EnergyFact of its own, keyed by the lease and its request id. The request path
records nothing for it, and no request-log row is waited for or updated. The other way, the sampler tells the
supervisor its admission decision, and keeps the node's admission row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.utils import timezone

from gateway import metrics
from gateway.models import EnergyFact, NodeAdmission, RequestLog, Supervisor
from gateway.node.admission import Decision
from gateway.node.link import SupervisorConnection, address_of
from gateway.requestlog import usage
from monitor.power import PowerSampler, Share

log = logging.getLogger(__name__)

UNWRITTEN_MAX = 10_000  # facts kept while the database refuses them


@dataclass(frozen=True)
class EndedLease:
    lease: str  # <request id>.<n>, as the gateway named it
    model: str

    @property
    def request_id(self) -> str:
        return self.lease.rsplit(".", 1)[0]


def wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class NodeLink:
    """Kept connected to the node's supervisor (found in the database under the node's name) for as long as the
    sampler runs; `settle()` writes the energy of the leases that ended, `decided()` passes admission on."""

    def __init__(self, node: str, power: PowerSampler | None) -> None:
        self.node = node
        self.power = power if power is not None and power.available else None
        self.connection: SupervisorConnection | None = None
        self.unwatch: Callable[[], None] | None = None
        self.unwritten: list[EnergyFact] = []
        self.decision = Decision()
        self.unstored: Decision | None = None

    async def keep_connected(self) -> None:
        """Find the supervisor (it may start later, or move to another port) and watch it."""
        address = await sync_to_async(self._address)()
        if self.connection is not None and (address is None or self.connection.address == address):
            return
        if self.unwatch is not None:
            self.unwatch()
            await self.connection.close()  # type: ignore[union-attr]
            self.connection = self.unwatch = None
        if address is not None:
            self.connection = SupervisorConnection(address)
            self.unwatch = self.connection.watch(self.heard)

    def _address(self) -> str | None:
        row = Supervisor.objects.filter(node=self.node).first()
        return address_of(row) if row else None

    def heard(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "connected":
            assert self.connection is not None
            if self.power is not None:
                self.connection.send({"op": "subscribe_energy"})
            self.connection.send(self.decision.message())
        elif op == "disconnected" and self.power is not None:
            self.power.forget_leases()  # the supervisor's leases ended with it
        elif op == "in_flight" and self.power is not None:
            # `busy` counts every lease and model load: a supervisor that does not say counts the generation ones.
            n = int(message["n"])
            self.power.set_in_flight(n, float(message["at"]), int(message.get("busy", n)))
        elif op == "lease_ended" and self.power is not None:
            # Its times are the supervisor's time.monotonic(), which this process shares (one host).
            ended = EndedLease(str(message["lease"]), str(message["model"]))
            self.power.lease_ended(ended, float(message["start"]), float(message["end"]))

    def decided(self, decision: Decision) -> None:
        """A new admission decision: to the supervisor at once; onto the node's row at the next `store_decision`."""
        self.decision = self.unstored = decision
        self.repeat()

    def repeat(self) -> None:
        """The current decision to the supervisor again: the sampler's heartbeat, every ADMISSION_INTERVAL, without
        which the supervisor takes a hard or soft decision for stale (the sampler died) and admits normally."""
        if self.connection is not None:
            self.connection.send(self.decision.message())

    async def store_decision(self) -> None:
        """The newest decision onto the node's admission row, where /health, the dashboard and Prometheus read it."""
        decision, self.unstored = self.unstored, None
        if decision is not None:
            try:
                await sync_to_async(NodeAdmission.objects.decided)(
                    self.node, decision.state, decision.reason, timezone.now()
                )
            except DatabaseError:
                self.unstored = self.unstored or decision
                log.exception("admission state not stored")

    async def settle(self) -> None:
        """Write the energy of every ended lease the power readings now cover (or have stalled on: then as far as
        they went); facts the database refused are written at the next call."""
        if self.power is None:
            return
        for lease, share in self.power.settled():
            if share is None:
                log.warning("no power reading covers lease %s: its energy is unknown", lease.lease)
            else:
                self.unwritten.append(self.fact(lease, share))
        if len(self.unwritten) > UNWRITTEN_MAX:
            log.warning("database unavailable: %d energy facts dropped", len(self.unwritten) - UNWRITTEN_MAX)
            del self.unwritten[:-UNWRITTEN_MAX]
        if self.unwritten:
            await sync_to_async(self.write)()

    def fact(self, lease: EndedLease, share: Share) -> EnergyFact:
        """The lease's fact. The share was computed on the monotonic clock; only the span shown is turned into
        wall-clock time, here, with the clocks' offset of this moment."""
        offset = time.time() - time.monotonic()
        return EnergyFact(
            lease=lease.lease[:64], request_id=lease.request_id[:32], node=self.node, model=lease.model[:200],
            gross_mj=share.gross_mj, net_mj=share.net_mj, source=self.power.source.name[:200],  # type: ignore[union-attr]
            start=wall(share.start + offset), end=wall(share.end + offset), seconds=share.seconds,
            measured_seconds=share.measured_seconds,
        )  # fmt: skip

    def write(self) -> None:
        """Write the facts waiting (then counted in Prometheus, and in usage when they arrived late)."""
        facts = self.unwritten
        # Once per lease: a fact already there (written before a failure that hid it) is left as it is.
        EnergyFact.objects.bulk_create(facts, ignore_conflicts=True)
        self.unwritten = []
        for fact in facts:
            metrics.count_energy(fact.model, fact.gross_mj / 1000)
        # A long request's energy may reach an hour whose usage is stored already.
        rows = RequestLog.objects.filter(request_id__in={fact.request_id for fact in facts})
        usage.arrived(rows.values_list("created", flat=True))

    async def close(self) -> None:
        if self.unwatch is not None:
            self.unwatch()
        if self.connection is not None:
            await self.connection.close()
