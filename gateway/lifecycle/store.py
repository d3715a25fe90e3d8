"""The supervisor's records: each model's state written into its row and pushed to every connected gateway (at once
for a state change, at most once a second for counters), and the supervisor's own row with its heartbeat.

Rows are written by one thread, in order; a database outage is logged and the states are written again with the
next change, never a reason for the supervisor to stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from gateway.lifecycle.machine import Machine
from gateway.models import Backend, ManagedRuntime, ModelState, Supervisor
from gateway.node.snapshot import ModelSnapshot

logger = logging.getLogger(__name__)


class Store:
    def __init__(self, machine: Machine, push: Callable[[dict[str, Any]], None]) -> None:
        self.machine = machine
        self.push = push
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supervisor-db")

    def after_step(self) -> None:
        """Push and write the state changes of the step just taken (counters wait for `flush`)."""
        machine = self.machine
        snapshots = [machine.snapshot(machine.entries[b]) for b in machine.transitions if b in machine.entries]
        snapshots += machine.forgotten.values()
        machine.transitions.clear()
        machine.forgotten.clear()
        if snapshots:
            self._send(snapshots, heartbeat=False)

    async def flush(self, heartbeat: bool) -> None:
        machine = self.machine
        snapshots = [machine.snapshot(machine.entries[b]) for b in machine.changed if b in machine.entries]
        machine.changed.clear()
        if snapshots or heartbeat:
            await asyncio.wrap_future(self._send(snapshots, heartbeat))

    def _send(self, snapshots: list[ModelSnapshot], heartbeat: bool) -> Any:
        budget = self.machine.budget_snapshot()
        for snapshot in snapshots:
            self.machine.changed.discard(snapshot.backend)
            entry = self.machine.entries.get(snapshot.backend)
            self.push({"op": "state", "model": snapshot.to_dict(), "budget": budget.to_dict(),
                       "key": entry.key if entry else ""})  # fmt: skip
        rows = [(snapshot, self._measured_for(snapshot.backend)) for snapshot in snapshots]
        return self.db.submit(self._write, rows, budget.used_bytes, budget.total_bytes)

    def _measured_for(self, backend: int) -> str:
        entry = self.machine.entries.get(backend)
        return entry.measured_for if entry is not None and entry.measured_valid() else ""

    def _write(self, rows: list[tuple[ModelSnapshot, str]], used: int, total: int | None) -> None:
        close_old_connections()
        try:
            existing = set(Backend.objects.filter(pk__in=[s.backend for s, _ in rows]).values_list("pk", flat=True))
            for snapshot, measured_for in rows:
                if snapshot.backend in existing:
                    defaults = {**_row(snapshot), "measured_for": measured_for}
                    ManagedRuntime.objects.update_or_create(backend_id=snapshot.backend, defaults=defaults)
            Supervisor.objects.filter(node=self.machine.node).update(
                heartbeat=timezone.now(), used_bytes=used, budget_bytes=total
            )
        except DatabaseError:
            logger.exception("supervisor: cannot record model states")

    async def record_address(self, host: str, port: int | None, socket: str) -> None:
        """Where gateways find this supervisor: its row, written when it starts (and when its TCP port binds)."""
        budget = self.machine.budget_snapshot()

        def write() -> None:
            close_old_connections()
            Supervisor.objects.update_or_create(node=self.machine.node, defaults={
                "host": host, "port": port or 0, "socket": socket, "pid": os.getpid(), "started": timezone.now(),
                "heartbeat": timezone.now(), "budget_bytes": budget.total_bytes, "budget_source": budget.source,
                "used_bytes": budget.used_bytes,
            })  # fmt: skip

        await asyncio.get_running_loop().run_in_executor(self.db, write)

    async def read(self, function: Callable[[], Any]) -> Any:
        """Run a database read on the store's thread, in order with its writes."""

        def call() -> Any:
            close_old_connections()
            return function()

        return await asyncio.get_running_loop().run_in_executor(self.db, call)

    def close(self) -> None:
        self.db.submit(close_old_connections)
        self.db.shutdown(wait=True)


def _row(snapshot: ModelSnapshot) -> dict[str, Any]:
    memory = snapshot.memory
    return {
        "state": snapshot.state if snapshot.state in ModelState.values else ModelState.STOPPED,
        "since": snapshot.since or timezone.now(),
        "pid": snapshot.pid, "port": snapshot.port, "estimated_bytes": memory.estimated_bytes,
        "estimate_detail": memory.estimate or {}, "measured_bytes": memory.measured_bytes,
        "peak_bytes": memory.peak_bytes, "reserved_bytes": memory.reserved_bytes,
        "in_flight": snapshot.in_flight, "waiting": snapshot.waiting, "last_used": snapshot.last_used,
        "unload_at": snapshot.unload_at, "last_error": snapshot.last_error, "exit_code": snapshot.exit_code,
        "load_seconds": snapshot.load_seconds, "oom_kills": snapshot.oom_kills,
        "saved_caches": snapshot.saved_caches, "saved_cache_bytes": snapshot.saved_cache_bytes,
    }  # fmt: skip
