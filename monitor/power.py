"""The fast power sampler: the board's total power at ENERGY_SAMPLE_HZ, integrated into energy and a fair share.

Besides the gross energy E(t) = ∫P dt it keeps a "virtual clock" for fair sharing: S(t) = ∫ P/n dt and
S_net(t) = ∫ (P - P_idle)/n dt over the time n(t) > 0, where n(t) is the number of generation requests in flight on
the node. A lease's share is then S(end) - S(start): every instant's energy divided equally among the requests
running at that instant. S is one running sum for every lease; each lease in flight keeps S at its start (a mark),
however long it runs, so no history window bounds a lease. Readings are joined by the trapezoid rule on the monotonic
clock, which the node's supervisor shares (a hardware energy counter is taken as it is); n changes are applied
exactly at their time, between two readings, by splitting the segment. Idle power is learned only while the node is
really idle: no lease at all (embeddings included) and no model loading.
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

from monitor.collectors import rails
from monitor.collectors.nvidia import NvidiaEnergyCounter
from monitor.models import IdlePower, Node

log = logging.getLogger(__name__)

LATE_SECONDS = 60.0  # readings kept: a change told this late is still applied at its time
GAP_SECONDS = 2.0  # readings further apart than this are bridged in a straight line, and that time is not measured
STALL_SECONDS = 120.0  # an ended lease the readings have not reached after this long is shared up to the last one
IDLE_MIN_SECONDS = 5.0  # idle power is taken only this long after the node became idle: its tail settles first
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
    mw: float  # board power at this instant (a counter's: its average over the segment ending here)
    e: float  # gross energy since the sampler started, mJ
    s: float  # ∫ P/n dt over n > 0, mJ
    s_net: float | None  # ∫ (P - P_idle)/n dt over n > 0, mJ; None while the idle power is unknown
    net_epoch: int  # S_net restarts when the idle power becomes known again: differences only within an epoch
    measured: float  # seconds since the sampler started whose power was read (readings at most GAP_SECONDS apart)
    n: int  # generation requests in flight from here on
    busy: int  # leases of any kind and models loading from here on (at least n)
    flat: bool = False  # the segment ending here had constant power (a counter), not a straight line
    bridged: bool = False  # the segment ending here lay between readings further apart than GAP_SECONDS
    idle_mw: float | None = None  # the idle power the segment ending here was counted above
    change: bool = False  # set_in_flight put n here


@dataclass(frozen=True)
class Share:
    """A lease's share of the board's energy over its span (monotonic times)."""

    start: float
    end: float
    gross_mj: float
    net_mj: float | None  # above the idle power, never negative; None while the idle power is unknown
    measured_seconds: float  # of the span, whose power was read (less when readings stalled or stopped, or began late)

    @property
    def seconds(self) -> float:
        return self.end - self.start


class PowerSampler:
    """Reads the board total at `hz` in its own thread and answers what a lease's energy was.

    For the request side, on the node's monotonic clock: `set_in_flight(n, at, busy)` whenever the leases in flight
    on the node change, `lease_ended(key, start, end)` once one has ended, and `settled()` gives the shares of those
    the readings now cover. All are thread-safe.
    """

    def __init__(
        self,
        source: PowerSource | None,
        hz: float = 10.0,
        idle_min: float = IDLE_MIN_SECONDS,
        idle_window: float = IDLE_WINDOW_SECONDS,
    ) -> None:
        if hz <= 0:
            raise ValueError("hz must be positive")
        self.source = source
        self.hz = hz
        self.idle_min = idle_min
        self.idle_window = idle_window
        self.power_mode: str | None = None  # the node's power mode the idle power belongs to; None until told
        self.ticks = 0
        self._points: list[Checkpoint] = []  # every reading and change of the last LATE_SECONDS
        self._marks: dict[float, Checkpoint] = {}  # older instants that leases in flight or ended still need
        self._open: collections.Counter[float] = collections.Counter()  # the starts of the leases in flight
        # (key, start, counted from, end) of the ended leases not shared yet
        self._ended: list[tuple[Any, float, float, float]] = []
        self._pending: list[tuple[float, int, int]] = []  # (at, n, busy) after the newest checkpoint, by time
        self._n, self._busy, self._n_at = 0, 0, -math.inf  # the newest change by time
        self._counter: float | None = None
        self._epoch = 0
        self._idle_mw: float | None = None
        self._idle_seconds = 0.0
        self._idle_since: float | None = None  # when the node last became idle; None while anything runs
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

    def set_in_flight(self, n: int, at: float | None = None, busy: int | None = None) -> None:
        """From monotonic time `at` (now when omitted) on, `n` generation requests are in flight on this node, and
        `busy` leases of any kind (embeddings too) and model loads (taken as `n` when omitted)."""
        if n < 0:
            raise ValueError("n must not be negative")
        at = time.monotonic() if at is None else at
        busy = n if busy is None else max(busy, n)
        with self._lock:
            if at >= self._n_at:
                if self._n == 0:
                    # Every lease that started before the node was last idle has ended: a start still counted
                    # belonged to one that ended unreported (its model crashed).
                    for start in [start for start in self._open if start <= self._n_at]:
                        del self._open[start]
                if n > self._n:
                    self._open[at] += n - self._n
                self._n, self._busy, self._n_at = n, busy, at
            if not self._points or at > self._points[-1].mono:
                bisect.insort(self._pending, (at, n, busy))
                # Waiting for a reading that does not come (a sensor gone): keep the newest changes only.
                del self._pending[:-PENDING_MAX]
            else:
                self._apply_late(at, n, busy)

    def lease_ended(self, key: Any, start: float, end: float) -> None:
        """A lease held from `start` to `end` (monotonic) has ended; `settled()` gives its share under `key`."""
        with self._lock:
            # Counted at its start; or, when the sampler learned of it later (it connected meanwhile), at the first
            # start counted after it, and shared from then on.
            counted = start if self._open[start] else min((t for t in self._open if start <= t <= end), default=start)
            if self._open[counted]:
                self._open[counted] -= 1
                if not self._open[counted]:
                    del self._open[counted]
            self._ended.append((key, start, counted, end))

    def forget_leases(self) -> None:
        """The supervisor is gone, and its leases with it: none is in flight, and none will end."""
        with self._lock:
            self._open.clear()
        self.set_in_flight(0)

    def settled(self, now: float | None = None) -> list[tuple[Any, Share | None]]:
        """(key, share) of each ended lease whose end the readings now cover, or have not reached STALL_SECONDS after
        it (then shared up to the last reading, which `measured_seconds` tells); each given once. The share is None
        when no reading covers any of the lease."""
        now = time.monotonic() if now is None else now
        done: list[tuple[Any, Share | None]] = []
        kept: list[tuple[Any, float, float, float]] = []
        with self._lock:
            newest = self._points[-1].mono if self._points else -math.inf
            for ended in self._ended:
                key, start, counted, end = ended
                if end <= newest or now - end >= STALL_SECONDS:
                    done.append((key, self._share(start, end, counted)))
                else:
                    kept.append(ended)
            self._ended = kept
        return done

    def energy_between(self, start: float, end: float) -> tuple[float, float | None] | None:
        """The share of the node's energy between two monotonic times of a request that was in flight all along:
        (gross mJ, net mJ above idle power, or None while that is unknown). None without a power sensor, or when the
        readings do not cover the interval (not sampled yet, or older than what is kept)."""
        with self._lock:
            if not self._covers(start, end):
                return None
            share = self._share(start, end)
        return None if share is None else (share.gross_mj, share.net_mj)

    def board_energy_between(self, start: float, end: float) -> float | None:
        """The node's whole energy (mJ) between two monotonic times, requests or not; None as energy_between."""
        with self._lock:
            if not self._covers(start, end):
                return None
            return self._at(end).e - self._at(start).e  # type: ignore[union-attr]

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
                "busy": self._busy,
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
        with self._lock:
            self._add(reading)
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

    def _add(self, reading: Reading) -> None:
        points, at = self._points, reading.at
        if not points:
            n, busy = 0, 0
            while self._pending and self._pending[0][0] <= at:
                _, n, busy = self._pending.pop(0)
            self._counter = reading.counter_mj
            net = 0.0 if self._idle_mw is not None else None
            points.append(Checkpoint(at, reading.mw or 0.0, 0.0, 0.0, net, self._epoch, 0.0, n, busy, change=True))
            self._idle_since = at if busy == 0 else None
            return
        last = points[-1]
        if at <= last.mono:
            return  # a counter printed nothing new
        if reading.counter_mj is not None:
            flat = True
            if self._counter is None or reading.counter_mj < self._counter:
                mw = 0.0  # the counter restarted (driver reload): this segment's energy is lost, not invented
            else:
                mw = (reading.counter_mj - self._counter) / (at - last.mono)
            self._counter = reading.counter_mj
        else:
            flat, mw = False, reading.mw or 0.0
        bridged = at - last.mono > GAP_SECONDS
        start = last
        while self._pending and self._pending[0][0] < at:
            change_at, n, busy = self._pending.pop(0)
            fraction = (change_at - start.mono) / (at - start.mono)
            change_mw = mw if flat else start.mw + (mw - start.mw) * fraction
            self._append(change_at, change_mw, flat, bridged, n, busy, change=True)
            start = points[-1]
        n, busy, change = points[-1].n, points[-1].busy, False
        if self._pending and self._pending[0][0] == at:
            _, n, busy = self._pending.pop(0)
            change = True
        self._append(at, mw, flat, bridged, n, busy, change)
        self._trim()

    def _append(self, mono: float, mw: float, flat: bool, bridged: bool, n: int, busy: int, change: bool) -> None:
        prev = self._points[-1]
        dt = mono - prev.mono
        de = mw * dt if flat else (prev.mw + mw) / 2 * dt
        idle = self._idle_since is not None and prev.mono - self._idle_since >= self.idle_min
        if prev.busy == 0 and idle and not bridged and dt > 0:
            self._add_idle(de / dt, dt)
        point = Checkpoint(mono, mw, prev.e + de, 0.0, None, 0, 0.0, n, busy, flat, bridged, self._idle_mw, change)
        self._advance(prev, point)
        self._points.append(point)
        if busy == 0 and prev.busy != 0:
            self._idle_since = mono
        elif busy > 0:
            self._idle_since = None

    def _advance(self, prev: Checkpoint, point: Checkpoint) -> None:
        """S, S_net and the measured time at `point` from `prev`, over the segment between them."""
        de, dt, idle = point.e - prev.e, point.mono - prev.mono, point.idle_mw
        point.s = prev.s + (de / prev.n if prev.n else 0.0)
        point.measured = prev.measured + (0.0 if point.bridged else dt)
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

    def _apply_late(self, at: float, n: int, busy: int) -> None:
        """A change stamped before the newest checkpoint (the caller was preempted): correct what followed it. One
        older than the readings kept is applied from the oldest of them."""
        points = self._points
        at = max(at, points[0].mono)
        index = bisect.bisect_right(points, at, key=lambda point: point.mono) - 1
        before = points[index]
        if before.mono == at:
            before.n, before.busy, before.change = n, busy, True
        else:
            after = points[index + 1]
            fraction = (at - before.mono) / (after.mono - before.mono)
            mw = after.mw if after.flat else before.mw + (after.mw - before.mw) * fraction
            de = mw * (at - before.mono) if after.flat else (before.mw + mw) / 2 * (at - before.mono)
            index += 1
            point = Checkpoint(at, mw, before.e + de, 0.0, None, 0, 0.0, n, busy, after.flat, after.bridged,
                               after.idle_mw, change=True)  # fmt: skip
            points.insert(index, point)
        follow = index + 1
        while follow < len(points) and not points[follow].change:
            points[follow].n, points[follow].busy = n, busy
            follow += 1
        for i in range(max(index, 1), len(points)):
            self._advance(points[i - 1], points[i])
        if follow == len(points):
            self._idle_since = at if busy == 0 else None

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
        cut = bisect.bisect_left(points, points[-1].mono - LATE_SECONDS, key=lambda point: point.mono) - 1
        if cut <= 64:  # in batches: deleting from a list's head moves the rest
            return
        # What leases in flight or ended still need from the readings about to go is kept as marks.
        wanted = {*self._open, *(counted for _, _, counted, _ in self._ended), *(end for *_, end in self._ended)}
        for instant in wanted:
            if points[0].mono <= instant < points[cut].mono and instant not in self._marks:
                self._marks[instant] = self._at(instant)  # type: ignore[assignment]
        self._marks = {instant: mark for instant, mark in self._marks.items() if instant in wanted}
        del points[:cut]

    def _covers(self, start: float, end: float) -> bool:
        points = self._points
        return self.source is not None and len(points) >= 2 and self._at(start) is not None and end <= points[-1].mono

    def _share(self, start: float, end: float, counted: float | None = None) -> Share | None:
        """The share of a lease from `start` to `end`, counted from `counted` (its start, or when the sampler learned
        of it), or the first instant known after that when it is no longer known; to `end`, or the newest reading when
        they stopped before it. None when no reading falls between."""
        if not self._points:
            return None
        counted = start if counted is None else counted
        first = self._at(counted) or self._first_after(counted)
        last = self._at(min(end, self._points[-1].mono))
        if first is None or last is None or first.mono > last.mono:
            return None
        net = None
        if first.s_net is not None and last.s_net is not None and first.net_epoch == last.net_epoch:
            net = min(max(last.s_net - first.s_net, 0.0), last.s - first.s)  # below idle power is no negative cost
        return Share(start, end, last.s - first.s, net, last.measured - first.measured)

    def _first_after(self, instant: float) -> Checkpoint | None:
        known = [mark for at, mark in self._marks.items() if at >= instant]
        if self._points and self._points[0].mono >= instant:
            known.append(self._points[0])
        return min(known, key=lambda point: point.mono, default=None)

    def _at(self, instant: float) -> Checkpoint | None:
        """The figures at a monotonic instant: interpolated between the readings around it, or a mark; None when
        neither reaches it."""
        points = self._points
        if not points or not points[0].mono <= instant <= points[-1].mono:
            return self._marks.get(instant)
        index = bisect.bisect_right(points, instant, key=lambda point: point.mono) - 1
        before = points[index]
        if before.mono == instant or index == len(points) - 1:
            return before
        after = points[index + 1]
        fraction = (instant - before.mono) / (after.mono - before.mono)

        def between(figure: str) -> float:
            return getattr(before, figure) + (getattr(after, figure) - getattr(before, figure)) * fraction

        s_net, epoch = None, after.net_epoch
        if before.s_net is not None and after.s_net is not None and before.net_epoch == after.net_epoch:
            s_net, epoch = between("s_net"), before.net_epoch
        return replace(
            before, mono=instant, e=between("e"), s=between("s"), s_net=s_net, net_epoch=epoch,
            measured=between("measured"), change=False,
        )  # fmt: skip


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
