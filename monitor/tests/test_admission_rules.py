"""Admission decides from the hottest zone and the board power, with hysteresis, and finds limits in trip points."""

from __future__ import annotations

from pathlib import Path

from monitor.admission import HARD, NORMAL, SOFT, Admission, Limits, limits_from_trip_points
from monitor.tests.jetson_tree import write

LIMITS = Limits(soft_c=70, hard_c=85, recover_c=5, power_w=10, source="test")


def states(admission: Admission, temperatures: list[float]) -> list[str]:
    seen = []
    for celsius in temperatures:
        admission.observe_temperatures({"cpu-thermal": celsius, "gpu-thermal": 40.0})
        seen.append(admission.decision.state)
    return seen


def test_it_goes_soft_then_hard_and_back_only_past_the_hysteresis() -> None:
    admission = Admission(LIMITS)
    assert states(admission, [60, 70, 84, 85, 81, 80, 66, 65]) == [
        NORMAL, SOFT, SOFT, HARD, HARD, SOFT, SOFT, NORMAL,
    ]  # fmt: skip
    assert admission.decision.code == ""


def test_it_names_the_hottest_zone_and_the_code() -> None:
    admission = Admission(LIMITS)
    decision = admission.observe_temperatures({"cpu-thermal": 91.5, "gpu-thermal": 60})
    assert decision is not None and decision.state == HARD and decision.code == "device_overheated"
    assert "cpu-thermal at 91.5 °C" in decision.reason
    assert admission.observe_temperatures({"cpu-thermal": 92}) is None  # unchanged: nothing to pass on


def test_it_sheds_on_power_after_three_readings_over_and_recovers_after_three_under() -> None:
    admission = Admission(LIMITS)
    assert [admission.observe_power(w) for w in (12, 12)] == [None, None]
    decision = admission.observe_power(12)
    assert decision is not None and (decision.state, decision.code) == (HARD, "power_limit")
    assert [admission.observe_power(w) for w in (8, 12, 8, 8)] == [None, None, None, None]
    assert admission.observe_power(8) is not None and admission.decision.state == NORMAL


def test_heat_outranks_power_and_power_outranks_soft() -> None:
    admission = Admission(LIMITS)
    admission.observe_temperatures({"cpu": 75})
    for _ in range(3):
        admission.observe_power(20)
    assert (admission.decision.state, admission.decision.code) == (HARD, "power_limit")
    admission.observe_temperatures({"cpu": 90})
    assert admission.decision.code == "device_overheated"


def test_it_takes_limits_from_the_passive_trip_point(tmp_path: Path) -> None:
    write(tmp_path, "class/thermal/thermal_zone0/trip_point_0_type", "passive\n")
    write(tmp_path, "class/thermal/thermal_zone0/trip_point_0_temp", "99000\n")
    write(tmp_path, "class/thermal/thermal_zone0/trip_point_1_type", "critical\n")
    write(tmp_path, "class/thermal/thermal_zone0/trip_point_1_temp", "104500\n")
    write(tmp_path, "class/thermal/thermal_zone1/trip_point_0_type", "passive\n")
    write(tmp_path, "class/thermal/thermal_zone1/trip_point_0_temp", "95000\n")
    soft, hard, source = limits_from_trip_points(tmp_path)
    assert (soft, hard) == (85, 93)
    assert "95" in source


def test_it_falls_back_to_the_critical_trip_point_or_fixed_limits(tmp_path: Path) -> None:
    assert limits_from_trip_points(tmp_path)[:2] == (80.0, 90.0)
    write(tmp_path, "class/thermal/thermal_zone0/trip_point_0_type", "critical\n")
    write(tmp_path, "class/thermal/thermal_zone0/trip_point_0_temp", "105000\n")
    assert limits_from_trip_points(tmp_path)[:2] == (85, 95)
