"""`manage.py monitor`: the sampler process; collects, stores and publishes every MONITOR_INTERVAL seconds, and
samples the board's power ENERGY_SAMPLE_HZ times a second in a thread beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.utils import timezone

from gateway import metrics
from monitor.admission import Admission, Decision, Limits
from monitor.collectors import files
from monitor.energy import NodeLink
from monitor.models import prune, roll_up
from monitor.power import PowerSampler, keep_idle_power, save_idle_power
from monitor.sampler import Sampler

log = logging.getLogger(__name__)

ROLLUP_EVERY = 300.0  # seconds; the sampler keeps its own node rolled up and pruned without a cron job
FIND_SUPERVISOR_EVERY = 5.0  # seconds between looks for the node's supervisor (it may start later, or move)


class Command(BaseCommand):
    help = "Sample this machine's metrics into the database and publish them to the dashboard until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=None, help="Seconds between samples.")
        parser.add_argument("--once", action="store_true", help="Take one sample and exit.")

    def handle(self, *args: object, **options: object) -> None:
        interval = float(options["interval"] or settings.MONITOR_INTERVAL)  # type: ignore[arg-type]
        self.shutdown = False
        once = bool(options["once"])
        if not once:
            # The node's one sampler counts the energy in a metrics directory of its own: first thing, before this
            # process creates a series.
            metrics.use_sampler_directory()
        # One sample needs no power integration.
        power = None if once else PowerSampler.for_this_machine()
        asyncio.run(self.run(Sampler(power=power), interval, once=once))
        if self.watch_failed:
            raise CommandError("admission and energy stopped with an error (see above): the sampler stopped too")

    def on_signal(self) -> None:
        self.shutdown = True
        self.wake.set()

    def on_watch_end(self, watching: asyncio.Future[None]) -> None:
        if not watching.cancelled() and watching.exception() is not None:
            # A sampler that samples on without deciding admission would look alive to every reader of its node's
            # state, which its supervisor no longer applies: stop, and let systemd start it again.
            log.error("admission and energy stopped", exc_info=watching.exception())
            self.watch_failed = True
            self.on_signal()

    async def run(self, sampler: Sampler, interval: float, once: bool = False) -> None:
        self.shutdown = self.watch_failed = False
        self.wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal)
        self.stdout.write(f"sampling node {sampler.name} every {interval:g} s")
        next_rollup = time.monotonic() + ROLLUP_EVERY
        power = sampler.power
        self.idle_saved = 0.0
        if power is not None and power.available:
            power.start()
            self.stdout.write(f"sampling power ({power.source.name}) {power.hz:g} times a second")  # type: ignore[union-attr]
        elif power is not None:
            self.stdout.write("no power sensor: energy is not measured")
        watching = None if once else asyncio.ensure_future(self.watch_node(sampler))
        if watching is not None:
            watching.add_done_callback(self.on_watch_end)
        try:
            # CPU load and network rates are differences: the first sample needs a reading one interval earlier.
            await asyncio.to_thread(sampler.collect_system)
            await self.sleep(interval)
            while not self.shutdown:
                started = time.monotonic()
                await self.step(sampler)
                if once:
                    break
                if power is not None and power.available:
                    await sync_to_async(self.keep_idle)(sampler, power)
                if started >= next_rollup:
                    next_rollup = started + ROLLUP_EVERY
                    await sync_to_async(self.maintain)(sampler)
                await self.sleep(interval - (time.monotonic() - started))
        finally:
            if watching is not None:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)  # its error, if any, is logged already
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            if power is not None and power.available:
                await asyncio.to_thread(power.stop)
                await sync_to_async(self.save_idle)(sampler, power)
            await sampler.aclose()
            await sync_to_async(connections.close_all)()
        self.stdout.write("sampler stopped")

    async def watch_node(self, sampler: Sampler) -> None:
        """Admission from the thermal zones (and, reading by reading, the power) and the energy of ended requests,
        through the link to the node's supervisor, which is told the decision at each change and every
        ADMISSION_INTERVAL."""
        loop = asyncio.get_running_loop()
        link = NodeLink(sampler.name, sampler.power)
        admission = Admission(Limits.for_this_machine())
        sys_root = Path(settings.MONITOR_SYS_ROOT)
        self.stdout.write(
            f"admission: soft at {admission.limits.soft_c:g} °C, hard at {admission.limits.hard_c:g} °C "
            f"({admission.limits.source}); power limit {admission.limits.power_w or 'none'}"
        )

        def pass_on(decision: Decision | None) -> None:
            if decision is not None:
                link.decided(decision)

        if link.power is not None:
            link.power.on_reading = lambda mw: loop.call_soon_threadsafe(pass_on, admission.observe_power(mw / 1000))
        next_look = 0.0
        try:
            while True:
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + FIND_SUPERVISOR_EVERY
                    with contextlib.suppress(DatabaseError):
                        await link.keep_connected()
                zones = await asyncio.to_thread(files.thermal_zones, sys_root)
                decision = admission.observe_temperatures(zones)
                if decision is None:
                    link.repeat()
                else:
                    link.decided(decision)
                await link.store_decision()
                try:
                    await link.settle()
                except DatabaseError:
                    log.exception("energy not written")
                await asyncio.sleep(settings.ADMISSION_INTERVAL)
        finally:
            if link.power is not None:
                link.power.on_reading = None
            await link.close()

    async def sleep(self, seconds: float) -> None:
        """Sleep to the next tick, waking at once on SIGTERM."""
        if seconds > 0 and not self.shutdown:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), seconds)

    async def step(self, sampler: Sampler) -> None:
        try:
            await sampler.step()
        except Exception:
            # A database restart must not end the sampler: drop the broken connection and try next tick.
            log.exception("sample failed")
            await sync_to_async(connections.close_all)()

    def keep_idle(self, sampler: Sampler, power: PowerSampler) -> None:
        if sampler.node is None:
            return
        try:
            self.idle_saved = keep_idle_power(power, sampler.node, time.monotonic(), self.idle_saved)
        except Exception:
            log.exception("idle power not loaded or stored")

    def save_idle(self, sampler: Sampler, power: PowerSampler) -> None:
        if sampler.node is None:
            return
        try:
            save_idle_power(power, sampler.node)
        except Exception:
            log.exception("idle power not stored")

    def maintain(self, sampler: Sampler) -> None:
        try:
            now = timezone.now()
            if sampler.node is not None:
                roll_up(now, sampler.node)
            prune(now, settings.MONITOR_RAW_RETENTION_HOURS, settings.MONITOR_ROLLUP_RETENTION_DAYS)
        except Exception:
            log.exception("rollup failed")
