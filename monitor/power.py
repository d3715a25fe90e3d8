"""The fast power sampler: the board's total power at ENERGY_SAMPLE_HZ, integrated into energy and a fair share.

Besides the gross energy E(t) = ∫P dt it keeps a "virtual clock" for fair sharing: S(t) = ∫ P/n dt and
S_net(t) = ∫ (P - P_idle)/n dt over the time n(t) > 0, where n(t) is the number of generation requests in flight on
the node. A request's share is then S(end) - S(start): every instant's energy divided equally among the requests
running at that instant. Readings are joined by the trapezoid rule on the monotonic clock (a hardware energy counter
is taken as it is); n changes are applied exactly at their time, between two readings, by splitting the segment.
"""

from __future__ import annotations

import bisect
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings

from monitor.collectors import rails
from monitor.collectors.nvidia import NvidiaEnergyCounter
from monitor.models import IdlePower, Node

log = logging.getLogger(__name__)

HISTORY_SECONDS = 900.0  # checkpoints kept: energy_between answers for any interval within the last 15 minutes
IDLE_MIN_SECONDS = 5.0  # idle power is taken only this long after the last request left: its tail settles first
IDLE_WINDOW_SECONDS = 600.0  # the idle average follows slow drift (temperature, fan) over about this long
IDLE_SAVE_SECONDS = 60.0  # how often a changed idle power is written to the database
PENDING_MAX = 10_000  # n changes kept while no reading arrives


@dataclass(frozen=True)
class Reading:
    """One reading of the board total at monotonic time `at`: a power (mW) or a hardware energy counter (mJ)."""

    at: float
    mw: float | None = None
    counter_mj: float | None = None


class PowerSource(Protocol):
    name: str  # what the total is, as the samples' `power.total_source` says it

    def read(self) -> Reading | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class RailsSource:
    """The board total from the discovered rail files: only the rails that make the total are read."""

    def __init__(self, found: list[rails.Rail]) -> None:
        chosen, self.name = rails.board_total(rail.name for rail in found)
        self.rails = [rail for rail in found if rail.name in chosen]

    def read(self) -> Reading | None:
        total = 0.0
        for rail in self.rails:
            mw = rail.read_mw()
            if mw is None:
                return None
            total += mw
        return Reading(at=time.monotonic(), mw=total)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class CounterSource:
    """The NVIDIA GPUs' energy counter, for machines without power rails."""

    def __init__(self, counter: NvidiaEnergyCounter) -> None:
        self.counter = counter
        self.name = counter.name

    def read(self) -> Reading | None:
        reading = self.counter.read()
        return Reading(at=reading.at, counter_mj=reading.mj) if reading else None

    def start(self) -> None:
        self.counter.start()

    def stop(self) -> None:
        self.counter.stop()


def board_power_source(sys_root: Path, nvidia_smi: str | None, period_ms: int) -> PowerSource | None:
    """This machine's board total: its power rails, else its NVIDIA GPUs' energy counter, else nothing."""
    found = rails.discover(sys_root)
    if found:
        return RailsSource(found)
    counter = NvidiaEnergyCounter.probe(nvidia_smi, period_ms)
    return CounterSource(counter) if counter else None


@dataclass(slots=True)
class Checkpoint:
    mono: float
    wall: float
    mw: float  # board power at this instant (a counter's: its average over the segment ending here)
    e: float  # gross energy since the sampler started, mJ
    s: float  # ∫ P/n dt over n > 0, mJ
    s_net: float | None  # ∫ (P - P_idle)/n dt over n > 0, mJ; None while the idle power is unknown
    net_epoch: int  # S_net restarts when the idle power becomes known again: differences only within an epoch
    n: int  # generation requests in flight from here on
    flat: bool = False  # the segment ending here had constant power (a counter), not a straight line
    idle_mw: float | None = None  # the idle power the segment ending here was counted above
    change: bool = False  # set_in_flight put n here


class PowerSampler:
    """Reads the board total at `hz` in its own thread and answers what a request's energy was.

    For the request side: `set_in_flight(n, at)` whenever the number of generation requests in flight on the node
    changes, and `energy_between(start_wall, end_wall)` once a request has ended. Both are thread-safe.
    """

    def __init__(
        self,
        source: PowerSource | None,
        hz: float = 10.0,
        history: float = HISTORY_SECONDS,
        idle_min: float = IDLE_MIN_SECONDS,
        idle_window: float = IDLE_WINDOW_SECONDS,
    ) -> None:
        if hz <= 0:
            raise ValueError("hz must be positive")
        self.source = source
        self.hz = hz
        self.history = history
        self.idle_min = idle_min
        self.idle_window = idle_window
        self.power_mode: str | None = None  # the node's power mode the idle power belongs to; None until told
        self.ticks = 0
        self._points: list[Checkpoint] = []
        self._pending: list[tuple[float, int]] = []  # n changes after the newest checkpoint, by time
        self._n, self._n_at = 0, -math.inf  # the newest change by time
        self._counter: float | None = None
        self._epoch = 0
        self._idle_mw: float | None = None
        self._idle_seconds = 0.0
        self._idle_since: float | None = None  # when n last became 0; None while requests run
        self._idle_changed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_reading: Callable[[float], None] | None = None  # told each reading's power (mW), in the thread

    @classmethod
    def for_this_machine(cls) -> PowerSampler:
        hz = settings.ENERGY_SAMPLE_HZ
        source = board_power_source(Path(settings.MONITOR_SYS_ROOT), shutil.which("nvidia-smi"), round(1000 / hz))
        return cls(source, hz)

    @property
    def available(self) -> bool:
        return self.source is not None

    # --- the request side

    def set_in_flight(self, n: int, at: float | None = None) -> None:
        """From monotonic time `at` (now when omitted) on, `n` generation requests are in flight on this node."""
        if n < 0:
            raise ValueError("n must not be negative")
        at = time.monotonic() if at is None else at
        with self._lock:
            if at >= self._n_at:
                self._n, self._n_at = n, at
            if not self._points or at > self._points[-1].mono:
                bisect.insort(self._pending, (at, n))
                # Waiting for a reading that does not come (a sensor gone): keep the newest changes only.
                del self._pending[:-PENDING_MAX]
            else:
                self._apply_late(at, n)

    def energy_between(self, start_wall: float, end_wall: float) -> tuple[float, float | None] | None:
        """The share of the node's energy between two wall-clock times (time.time()) of a request that was in
        flight all along: (gross mJ, net mJ above idle power, or None while that is unknown). None without a power
        sensor, or when the interval is not covered by the checkpoints (not sampled yet, or older than `history`)."""
        with self._lock:
            if not self._covers(start_wall, end_wall):
                return None
            s0, net0, epoch0 = self._at_wall(start_wall)
            s1, net1, epoch1 = self._at_wall(end_wall)
        net = net1 - net0 if net0 is not None and net1 is not None and epoch0 == epoch1 else None
        return s1 - s0, net

    def board_energy_between(self, start_wall: float, end_wall: float) -> float | None:
        """The node's whole energy (mJ) between two wall-clock times, requests or not; None as energy_between."""
        with self._lock:
            if not self._covers(start_wall, end_wall):
                return None
            return self._at_wall(end_wall, "e")[0] - self._at_wall(start_wall, "e")[0]

    def snapshot(self) -> dict | None:
        """The newest figures, for the monitor's samples; None without a sensor or before the first reading."""
        with self._lock:
            if self.source is None or not self._points:
                return None
            last = self._points[-1]
            return {
                "source": self.source.name,
                "hz": self.hz,
                "mw": round(last.mw, 1),
                "energy_mj": round(last.e, 1),
                "in_flight": self._n,
                "idle_mw": round(self._idle_mw, 1) if self._idle_mw is not None else None,
                "power_mode": self.power_mode,
            }

    # --- idle power, per power mode

    def use_power_mode(self, mode: str, stored: tuple[float, float] | None) -> None:
        """The node is in `mode` now; `stored` is that mode's idle power (mW, seconds) as last measured, if ever."""
        with self._lock:
            self.power_mode = mode
            self._idle_mw, self._idle_seconds = stored if stored else (None, 0.0)
            self._idle_changed = False
            if self._idle_since is not None and self._points:
                self._idle_since = self._points[-1].mono  # power after a mode change settles before it counts

    def idle_power(self) -> tuple[float, float] | None:
        """The idle power measured so far: (mW, seconds it stands on), or None."""
        with self._lock:
            return (self._idle_mw, self._idle_seconds) if self._idle_mw is not None else None

    def take_idle_change(self) -> bool:
        """Whether the idle power moved since the last call (so that it is worth storing)."""
        with self._lock:
            changed, self._idle_changed = self._idle_changed, False
            return changed

    # --- the sampling side

    def tick(self) -> bool:
        """Take one reading and integrate it; False when the source gave none."""
        reading = self.source.read() if self.source else None
        if reading is None:
            return False
        wall = time.time() - (time.monotonic() - reading.at)
        with self._lock:
            self._add(reading, wall)
            self.ticks += 1
            mw = self._points[-1].mw
        if self.on_reading is not None:
            self.on_reading(mw)
        return True

    def start(self) -> None:
        """Sample in a thread until stop()."""
        if self.source is None or self._thread is not None:
            return
        self.source.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.source is not None:
            self.source.stop()

    def _run(self) -> None:
        period = 1.0 / self.hz
        next_at = time.monotonic()
        failed = False
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                # Once: a broken sensor at 10 Hz must not fill the log.
                if not failed:
                    log.exception("power reading failed")
                failed = True
            next_at += period
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at, delay = time.monotonic(), 0.0  # late (a stalled machine): skip, do not catch up
            self._stop.wait(delay)

    # --- integration (under the lock)

    def _add(self, reading: Reading, wall: float) -> None:
        points, at = self._points, reading.at
        if not points:
            n = 0
            while self._pending and self._pending[0][0] <= at:
                n = self._pending.pop(0)[1]
            self._counter = reading.counter_mj
            net = 0.0 if self._idle_mw is not None else None
            points.append(Checkpoint(at, wall, reading.mw or 0.0, 0.0, 0.0, net, self._epoch, n, change=True))
            self._idle_since = at if n == 0 else None
            return
        last = points[-1]
        if at <= last.mono:
            return  # a counter printed nothing new
        wall = max(wall, last.wall)
        if reading.counter_mj is not None:
            flat = True
            if self._counter is None or reading.counter_mj < self._counter:
                mw = 0.0  # the counter restarted (driver reload): this segment's energy is lost, not invented
            else:
                mw = (reading.counter_mj - self._counter) / (at - last.mono)
            self._counter = reading.counter_mj
        else:
            flat, mw = False, reading.mw or 0.0
        start = last
        while self._pending and self._pending[0][0] < at:
            change_at, n = self._pending.pop(0)
            fraction = (change_at - start.mono) / (at - start.mono)
            self._append(
                change_at,
                start.wall + (wall - start.wall) * fraction,
                mw if flat else start.mw + (mw - start.mw) * fraction,
                flat,
                n,
                change=True,
            )
            start = points[-1]
        n, change = points[-1].n, False
        if self._pending and self._pending[0][0] == at:
            n, change = self._pending.pop(0)[1], True
        self._append(at, wall, mw, flat, n, change)
        self._trim()

    def _append(self, mono: float, wall: float, mw: float, flat: bool, n: int, change: bool) -> None:
        prev = self._points[-1]
        dt = mono - prev.mono
        de = mw * dt if flat else (prev.mw + mw) / 2 * dt
        if prev.n == 0 and self._idle_since is not None and prev.mono - self._idle_since >= self.idle_min and dt > 0:
            self._add_idle(de / dt, dt)
        idle = self._idle_mw
        point = Checkpoint(mono, wall, mw, prev.e + de, 0.0, None, 0, n, flat, idle, change)
        self._advance(prev, point)
        self._points.append(point)
        if n == 0 and prev.n != 0:
            self._idle_since = mono
        elif n > 0:
            self._idle_since = None

    def _advance(self, prev: Checkpoint, point: Checkpoint) -> None:
        """S and S_net at `point` from `prev`, over the segment between them."""
        de, dt, idle = point.e - prev.e, point.mono - prev.mono, point.idle_mw
        point.s = prev.s + (de / prev.n if prev.n else 0.0)
        if idle is None:
            point.s_net, point.net_epoch = None, prev.net_epoch
            return
        if prev.s_net is None:
            # The idle power just became known: a new epoch starts at `prev`.
            self._epoch = max(self._epoch, prev.net_epoch) + 1
            base, point.net_epoch = 0.0, self._epoch
        else:
            base, point.net_epoch = prev.s_net, prev.net_epoch
        point.s_net = base + ((de - idle * dt) / prev.n if prev.n else 0.0)

    def _apply_late(self, at: float, n: int) -> None:
        """A change stamped before the newest checkpoint (the caller was preempted): correct what followed it."""
        points = self._points
        if at < points[0].mono:
            return
        index = bisect.bisect_right(points, at, key=lambda point: point.mono) - 1
        before = points[index]
        if before.mono == at:
            before.n, before.change = n, True
        else:
            after = points[index + 1]
            fraction = (at - before.mono) / (after.mono - before.mono)
            mw = after.mw if after.flat else before.mw + (after.mw - before.mw) * fraction
            de = mw * (at - before.mono) if after.flat else (before.mw + mw) / 2 * (at - before.mono)
            wall = before.wall + (after.wall - before.wall) * fraction
            index += 1
            points.insert(
                index,
                Checkpoint(at, wall, mw, before.e + de, 0.0, None, 0, n, after.flat, after.idle_mw, change=True),
            )
        follow = index + 1
        while follow < len(points) and not points[follow].change:
            points[follow].n = n
            follow += 1
        for i in range(max(index, 1), len(points)):
            self._advance(points[i - 1], points[i])
        if follow == len(points):
            self._idle_since = at if n == 0 else None

    def _add_idle(self, mw: float, dt: float) -> None:
        # A plain average at first, then a moving one over the last `idle_window` seconds.
        self._idle_seconds = min(self._idle_seconds + dt, self.idle_window)
        if self._idle_mw is None:
            self._idle_mw = mw
        else:
            self._idle_mw += (mw - self._idle_mw) * dt / self._idle_seconds
        self._idle_changed = True

    def _trim(self) -> None:
        points = self._points
        # One checkpoint older than the horizon stays, so that the horizon itself can be interpolated.
        cut = bisect.bisect_left(points, points[-1].mono - self.history, key=lambda point: point.mono) - 1
        if cut > 64:  # in batches: deleting from a list's head moves the rest
            del points[:cut]

    def _covers(self, start_wall: float, end_wall: float) -> bool:
        points = self._points
        return (
            self.source is not None and len(points) >= 2 and points[0].wall <= start_wall <= end_wall <= points[-1].wall
        )

    def _at_wall(self, wall: float, field: str = "s") -> tuple[float, float | None, int]:
        """`field` (E or S) and S_net at a wall-clock time, interpolated between the checkpoints around it."""
        points = self._points
        index = bisect.bisect_right(points, wall, key=lambda point: point.wall) - 1
        before = points[index]
        if before.wall == wall or index == len(points) - 1:
            return getattr(before, field), before.s_net, before.net_epoch
        after = points[index + 1]
        fraction = (wall - before.wall) / (after.wall - before.wall) if after.wall > before.wall else 0.0
        value = getattr(before, field) + (getattr(after, field) - getattr(before, field)) * fraction
        if before.s_net is None or after.s_net is None or before.net_epoch != after.net_epoch:
            return value, None, after.net_epoch
        return value, before.s_net + (after.s_net - before.s_net) * fraction, before.net_epoch


def keep_idle_power(power: PowerSampler, node: Node, now: float, last_saved: float) -> float:
    """Give the sampler the stored idle power of the node's power mode when it is first seen or changes, and store
    what the sampler measured at most every IDLE_SAVE_SECONDS; the time of the last save."""
    mode = node.power_mode
    if power.power_mode != mode:
        if power.power_mode is not None:
            save_idle_power(power, node, power.power_mode)
        power.use_power_mode(mode, IdlePower.objects.recall(node, mode))
        return now
    if now - last_saved >= IDLE_SAVE_SECONDS and power.take_idle_change():
        save_idle_power(power, node, mode)
        return now
    return last_saved


def save_idle_power(power: PowerSampler, node: Node, mode: str | None = None) -> None:
    measured = power.idle_power()
    mode = power.power_mode if mode is None else mode
    if measured is not None and mode is not None:
        IdlePower.objects.remember(node, mode, *measured)
