"""Admission fails open: a part whose readings stop (thermal zones, power sensor) for the stale bound is back to normal
and says why, with one warning as it goes stale and one as its readings return."""

from __future__ import annotations

import logging

import pytest

from monitor.admission import HARD, NORMAL, Admission, Limits

LIMITS = Limits(soft_c=70, hard_c=85, recover_c=5, power_w=10, source="test")
STALE_AFTER = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admission(clock: Clock) -> Admission:
    return Admission(LIMITS, stale_after=STALE_AFTER, clock=clock)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_it_forgets_the_heat_once_the_thermal_zones_stop_reading(
    admission: Admission, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    assert admission.observe_temperatures({"cpu-thermal": 95.0}) is not None
    assert admission.decision.state == HARD
    clock.now += 9.0
    assert admission.observe_temperatures({}) is None  # not silent long enough: still hard
    clock.now += 3.0
    decision = admission.observe_temperatures({})
    assert decision is not None and decision.state == NORMAL and decision.code == ""
    assert decision.reason == "stale: no temperature reading for 12 s"
    for _ in range(3):
        clock.now += 1.0
        assert admission.observe_temperatures({}) is None
    assert warnings(caplog) == ["stale: no temperature reading for 12 s: admission leaves them out until one arrives"]
    # The zone answers again, still hot: hard again at once, and one more warning.
    decision = admission.observe_temperatures({"cpu-thermal": 95.0})
    assert decision is not None and decision.state == HARD
    assert warnings(caplog)[1:] == ["temperature readings are back: admission counts them again"]


def test_it_forgets_the_power_once_its_readings_stop(
    admission: Admission, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        admission.observe_power(25.0)
    assert (admission.decision.state, admission.decision.code) == (HARD, "power_limit")
    # The sensor stops answering; the thermal zones, looked at every interval, still read cool.
    for _ in range(10):
        clock.now += 1.0
        assert admission.observe_temperatures({"cpu-thermal": 50.0}) is None
    clock.now += 1.0
    decision = admission.observe_temperatures({"cpu-thermal": 50.0})
    assert decision is not None and decision.state == NORMAL
    assert decision.reason == "stale: no power reading for 11 s"
    assert len(warnings(caplog)) == 1
    # Back: it takes three readings over the limit again to shed load.
    assert [admission.observe_power(25.0) for _ in range(2)] == [None, None]
    assert admission.observe_power(25.0) is not None and admission.decision.code == "power_limit"
    assert warnings(caplog)[1:] == ["power readings are back: admission counts them again"]


def test_a_machine_without_sensors_never_goes_stale(
    admission: Admission, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(30):
        clock.now += 1.0
        assert admission.observe_temperatures({}) is None
    assert admission.decision.state == NORMAL and admission.decision.reason == ""
    assert warnings(caplog) == []
