"""`manage.py supervise`: this node's supervisor, which runs the managed models' llama-servers on demand."""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from gateway import upstream
from gateway.lifecycle.supervisor import NodeSupervisor
from monitor.sampler import node_name


class Command(BaseCommand):
    help = "Run this node's model supervisor until SIGTERM (which stops every model it started)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.SUPERVISOR_HOST)
        parser.add_argument("--port", type=int, default=settings.SUPERVISOR_PORT, help="0 picks a free port")

    def handle(self, *args: object, **options: object) -> None:
        supervisor = NodeSupervisor(node_name(), str(options["host"]), int(options["port"]))  # type: ignore[call-overload]
        asyncio.run(self.run(supervisor))

    async def run(self, supervisor: NodeSupervisor) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await supervisor.start()
        budget = supervisor.budget_snapshot()
        self.stdout.write(
            f"supervisor of node {supervisor.node} on {supervisor.host}:{supervisor.port}, "
            f"{len(supervisor.models)} managed model(s), budget {budget['total_bytes'] // 2**20} MiB ({budget['source']})"
        )
        self.stdout.flush()
        await stop.wait()
        self.stdout.write("stopping every model…")
        await supervisor.stop()
        await upstream.close_sessions()
        self.stdout.write("supervisor stopped")
