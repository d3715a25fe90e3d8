"""`manage.py supervise`: this node's supervisor, which runs the managed models' llama-servers on demand."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from gateway import upstream
from gateway.lifecycle.supervisor import NodeSupervisor
from gateway.node.identity import node_name


class Command(BaseCommand):
    help = "Run this node's model supervisor until SIGTERM (which drains it, then stops every model it started)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.SUPERVISOR_HOST, help="TCP address for other nodes; '' for none")
        parser.add_argument("--port", type=int, default=settings.SUPERVISOR_PORT, help="0 picks a free port")
        parser.add_argument(
            "--socket", default=str(settings.SUPERVISOR_SOCKET or ""), help="Unix socket for this node; '' for none"
        )

    def handle(self, *args: object, **options: object) -> None:
        socket = str(options["socket"])
        supervisor = NodeSupervisor(
            node_name(), str(options["host"]), int(options["port"]),  # type: ignore[call-overload]
            Path(socket) if socket else None,
        )  # fmt: skip
        asyncio.run(self.run(supervisor))

    async def run(self, supervisor: NodeSupervisor) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await supervisor.start()
        assert supervisor.machine is not None
        budget = supervisor.machine.budget_snapshot()
        self.stdout.write(
            f"supervisor of node {supervisor.node} on {supervisor.server.socket_path or 'no socket'} and "
            f"{supervisor.host}:{supervisor.server.port}, {len(supervisor.machine.entries)} managed model(s), "
            f"budget {(budget.total_bytes or 0) // 2**20} MiB ({budget.source})"
        )
        self.stdout.flush()
        await stop.wait()
        self.stdout.write("draining, then stopping every model…")
        self.stdout.flush()
        await supervisor.stop()
        await upstream.close_sessions()
        self.stdout.write("supervisor stopped")
