"""Admission by heat and power: whether the node takes new generation requests (normal), queues them one at a time
per model (soft), or refuses them (hard), decided from the hottest thermal zone and the board's power.

The sampler decides; the node's supervisor applies it (gateway.lifecycle) and the node's admission row shows it
(gateway.node.models.NodeAdmission); the state names, the codes and the decision told live below both apps, in
gateway.node.admission. Both limits have hysteresis: a zone must cool ADMISSION_RECOVER_C below a limit to leave its
zone, and the power must stay under its limit for as many readings as it took to go over it. Both fail open: a part whose readings
stop (thermal zones that no longer read, a power sensor that no longer answers) for ADMISSION_STALE_SECONDS is back
to normal until they return, so that a broken sensor on a hot board does not refuse every request for good.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from gateway.node.admission import (
    HARD,
    HOT,
    NORMAL,
    OVERHEATED,
    POWER_LIMIT,
    RETRY_AFTER_HEAT,
    RETRY_AFTER_POWER,
    SOFT,
    STALE,  # noqa: F401 (for readers that import the names from here)
    Decision,
)
from monitor.collectors import files

log = logging.getLogger(__name__)

POWER_READINGS = 3  # consecutive readings over the power limit that make it hard (and under it that end it)
# Without limits of its own or trip points of the board: a Jetson throttles near 99 °C, plain PCs near 90-100 °C.
FALLBACK_SOFT_C, FALLBACK_HARD_C = 80.0, 90.0


@dataclass(frozen=True)
class Limits:
    soft_c: float
    hard_c: float
    recover_c: float
    power_w: float | None
    source: str  # where the temperatures came from: the settings or the board's trip points

    @classmethod
    def for_this_machine(cls) -> Limits:
        soft, hard, source = settings.ADMISSION_TEMP_SOFT_C, settings.ADMISSION_TEMP_HARD_C, "settings"
        if soft is None or hard is None:
            derived_soft, derived_hard, source = limits_from_trip_points(Path(settings.MONITOR_SYS_ROOT))
            soft = derived_soft if soft is None else soft
            hard = derived_hard if hard is None else hard
        return cls(soft, max(hard, soft), settings.ADMISSION_RECOVER_C, settings.ADMISSION_POWER_LIMIT_W, source)


def limits_from_trip_points(sys_root: Path) -> tuple[float, float, str]:
    """(soft °C, hard °C, how they were found) from the thermal zones' trip points.

    Throttling starts at the lowest `passive` trip: the hard limit stays 2 °C below it, so that the gateway sheds
    load before the board slows every request down; soft is 10 °C below. Without a passive trip, the lowest `hot`
    or `critical` (shutdown) trip, 10 and 20 °C below. Without either, fixed fallbacks.
    """
    passive: list[float] = []
    shutdown: list[float] = []
    for zone in (sys_root / "class" / "thermal").glob("thermal_zone*"):
        for kind_file in zone.glob("trip_point_*_type"):
            kind = files.read_text(kind_file)
            millic = files.read_float(zone / kind_file.name.replace("_type", "_temp"))
            if millic is None or millic <= 0:
                continue
            if kind == "passive":
                passive.append(millic / 1000)
            elif kind in ("hot", "critical"):
                shutdown.append(millic / 1000)
    if passive:
        return min(passive) - 10, min(passive) - 2, f"passive trip point {min(passive):g} °C"
    if shutdown:
        return min(shutdown) - 20, min(shutdown) - 10, f"critical trip point {min(shutdown):g} °C"
    return FALLBACK_SOFT_C, FALLBACK_HARD_C, "fallback (no trip points)"


class Readings:
    """When one kind of reading last arrived, and whether it has gone stale: none for longer than `stale_after`
    seconds since the last one (never before the first: a machine without the sensor has nothing to miss)."""

    def __init__(self, kind: str, stale_after: float, clock: Callable[[], float]) -> None:
        self.kind = kind
        self.stale_after = stale_after
        self.clock = clock
        self.last: float | None = None
        self.stale = False
        self.reason = ""

    def arrived(self) -> None:
        if self.stale:
            log.warning("%s readings are back: admission counts them again", self.kind)
            self.stale, self.reason = False, ""
        self.last = self.clock()

    def went_stale(self) -> bool:
        """True once, when the readings have just gone stale."""
        if self.stale or self.last is None:
            return False
        silent = self.clock() - self.last
        if silent <= self.stale_after:
            return False
        self.stale, self.reason = True, f"stale: no {self.kind} reading for {silent:.0f} s"
        log.warning("%s: admission leaves them out until one arrives", self.reason)
        return True


class Admission:
    """Fed temperatures and power readings; says when the decision changes. Thread-safe enough for one feeder of
    each kind (the power readings come from the power sampler's thread, the temperatures from the sample loop).

    Its staleness is checked at each feed: the temperatures are looked at every ADMISSION_INTERVAL, readable or not.
    `clock` (monotonic seconds) is for tests.
    """

    def __init__(
        self, limits: Limits, stale_after: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        stale_after = settings.ADMISSION_STALE_SECONDS if stale_after is None else stale_after
        self.temperature_readings = Readings("temperature", stale_after, clock)
        self.power_readings = Readings("power", stale_after, clock)
        self.heat = NORMAL
        self.heat_reason = ""
        self.over = 0  # consecutive readings over the power limit
        self.under = 0
        self.power_hard = False
        self.power_reason = ""
        self.decision = Decision()
        self.since = time.time()
        self.lock = threading.Lock()

    def observe_temperatures(self, zones: dict[str, float]) -> Decision | None:
        """The readable zones (°C by name); the new decision when it changed."""
        with self.lock:
            return self._observe_temperatures(zones)

    def _observe_temperatures(self, zones: dict[str, float]) -> Decision | None:
        if zones:
            self.temperature_readings.arrived()
            name, hottest = max(zones.items(), key=lambda item: item[1])
            self.heat = self._heat_state(hottest)
            limit = self.limits.hard_c if self.heat == HARD else self.limits.soft_c
            self.heat_reason = f"{name} at {hottest:g} °C (limit {limit:g} °C)" if self.heat != NORMAL else ""
        return self._decide()

    def observe_power(self, watts: float) -> Decision | None:
        """One reading of the board's total power; the new decision when it changed."""
        with self.lock:
            return self._observe_power(watts)

    def _observe_power(self, watts: float) -> Decision | None:
        limit = self.limits.power_w
        if limit is None or math.isnan(watts):
            return None
        self.power_readings.arrived()
        if watts > limit:
            self.over, self.under = self.over + 1, 0
            if self.over >= POWER_READINGS:
                self.power_hard = True
                self.power_reason = f"board power {watts:.1f} W over the {limit:g} W limit"
        else:
            self.under, self.over = self.under + 1, 0
            if self.under >= POWER_READINGS:
                self.power_hard = False
        return self._decide()

    def _heat_state(self, hottest: float) -> str:
        soft, hard, recover = self.limits.soft_c, self.limits.hard_c, self.limits.recover_c
        if hottest >= hard or (self.heat == HARD and hottest > hard - recover):
            return HARD
        if hottest >= soft or (self.heat != NORMAL and hottest > soft - recover):
            return SOFT
        return NORMAL

    def _expire(self) -> None:
        """Back to normal, the part whose readings have stopped."""
        if self.temperature_readings.went_stale():
            self.heat, self.heat_reason = NORMAL, ""
        if self.power_readings.went_stale():
            self.power_hard, self.over, self.under = False, 0, 0

    def _decide(self) -> Decision | None:
        self._expire()
        if self.heat == HARD:
            decision = Decision(HARD, OVERHEATED, self.heat_reason, RETRY_AFTER_HEAT)
        elif self.power_hard:
            decision = Decision(HARD, POWER_LIMIT, self.power_reason, RETRY_AFTER_POWER)
        elif self.heat == SOFT:
            decision = Decision(SOFT, HOT, self.heat_reason, RETRY_AFTER_HEAT)
        else:
            stale = [readings.reason for readings in (self.temperature_readings, self.power_readings) if readings.stale]
            decision = Decision(reason="; ".join(stale))
        if (decision.state, decision.code) == (self.decision.state, self.decision.code):
            return None
        self.decision, self.since = decision, time.time()
        return decision
