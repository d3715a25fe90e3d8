"""The sampler's link to its node's supervisor: energy per request in, admission out.

The supervisor tells the sampler every change in the number of generation requests in flight on the node (the power
sampler's fair shares need it at the exact time) and the start and end of every lease that ended; the sampler then
writes that lease's share of the board's energy into its request's log row (`energy_mj`, `energy_net_mj`). The
request path records nothing for it. The other way, the sampler tells the supervisor its admission decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from gateway import metrics
from gateway.models import RequestLog, Supervisor
from gateway.node.link import SupervisorConnection, address_of
from gateway.requestlog import usage
from monitor.admission import Decision
from monitor.models import Node
from monitor.power import PowerSampler

log = logging.getLogger(__name__)

ROW_WAIT_SECONDS = 120.0  # how long an ended lease waits for its request's row (the gateway writes rows in batches)


@dataclass
class EndedLease:
    request_id: str
    model: str
    start_wall: float
    end_wall: float
    share: tuple[float, float | None] | None = None  # (gross mJ, net mJ) once the power samples cover it


class NodeLink:
    """Kept connected to the node's supervisor (found in the database under the node's name) for as long as the
    sampler runs; `settle()` writes the energy of the leases that ended, `decided()` passes admission on."""

    def __init__(self, node: str, power: PowerSampler | None) -> None:
        self.node = node
        self.power = power if power is not None and power.available else None
        self.connection: SupervisorConnection | None = None
        self.unwatch: Callable[[], None] | None = None
        self.ended: list[EndedLease] = []
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
            self.power.set_in_flight(0)  # the supervisor's leases ended with it
        elif op == "in_flight" and self.power is not None:
            self.power.set_in_flight(int(message["n"]), float(message["at"]))
        elif op == "lease_ended" and self.power is not None:
            offset = time.time() - time.monotonic()  # one host, one monotonic clock
            request_id = str(message["lease"]).rsplit(".", 1)[0]  # leases are named <request id>.<n>
            self.ended.append(
                EndedLease(request_id, str(message["model"]), message["start"] + offset, message["end"] + offset)
            )

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
        """The newest decision onto the node's row, where /health, the dashboard and Prometheus read it."""
        decision, self.unstored = self.unstored, None
        if decision is not None:
            try:
                await sync_to_async(self._store_decision)(decision)
            except DatabaseError:
                self.unstored = self.unstored or decision
                log.exception("admission state not stored")

    def _store_decision(self, decision: Decision) -> None:
        Node.objects.update_or_create(
            name=self.node,
            defaults={
                "admission_state": decision.state,
                "admission_reason": decision.reason,
                "admission_since": timezone.now(),
            },
        )

    async def settle(self) -> None:
        """Write the energy of every ended lease whose end the power samples cover, once its row exists."""
        if self.power is None or not self.ended:
            return
        now = time.time()
        for lease in self.ended:
            if lease.share is None:
                lease.share = self.power.energy_between(lease.start_wall, lease.end_wall)
        ready = [lease for lease in self.ended if lease.share is not None]
        written = await sync_to_async(self._write)(ready) if ready else set()
        # Kept: leases not sampled yet, and those whose row has not arrived; given up after ROW_WAIT_SECONDS.
        self.ended = [
            lease for lease in self.ended if id(lease) not in written and now - lease.end_wall < ROW_WAIT_SECONDS
        ]

    def _write(self, leases: list[EndedLease]) -> set[int]:
        written = set()
        for lease in leases:
            gross, net = lease.share  # type: ignore[misc]
            net_value = Coalesce(F("energy_net_mj"), Value(0.0)) + net if net is not None else F("energy_net_mj")
            # Added, not set: a request that was granted twice (its first grant refused) has two leases.
            updated = RequestLog.objects.filter(request_id=lease.request_id).update(
                energy_mj=Coalesce(F("energy_mj"), Value(0.0)) + gross, energy_net_mj=net_value
            )
            if updated:
                written.add(id(lease))
                metrics.count_energy(lease.model, gross / 1000)
        # A long request's row may sit in an hour whose usage is stored already: have that hour computed again.
        horizon = timezone.now() - usage.GRACE
        ids = [lease.request_id for lease in leases if id(lease) in written]
        late = set(RequestLog.objects.filter(request_id__in=ids, created__lt=horizon).values_list("created", flat=True))
        if late:
            usage.forget(late)
        return written

    async def close(self) -> None:
        if self.unwatch is not None:
            self.unwatch()
        if self.connection is not None:
            await self.connection.close()
