"""Raw samples roll up into per-minute averages and maxima once each; samples and rollups are pruned by age."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from monitor.models import Node, Rollup, Sample, prune, roll_up
from monitor.tests.samples import make_sample

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def fill(node: str = "orin-1") -> None:
    # Minute 12:00 has cpu 10, 20, 30; minute 12:01 has 40 and no GPU figure; 12:02 has 50.
    for second, cpu in ((0, 10.0), (20, 20.0), (40, 30.0), (70, 40.0), (130, 50.0)):
        gpu = None if second == 70 else cpu / 10
        make_sample(node, T0 + timedelta(seconds=second), cpu_percent=cpu, gpu_percent=gpu, ram_used=1000 + second)


@pytest.mark.django_db
def test_it_averages_and_maxes_each_complete_minute() -> None:
    fill()
    made = roll_up(T0 + timedelta(minutes=3, seconds=10))
    rows = list(Rollup.objects.order_by("minute"))
    # 12:02 is left for the next run: the last minute may still be receiving samples.
    assert made == 2
    assert [row.minute for row in rows] == [T0, T0 + timedelta(minutes=1)]
    assert (rows[0].count, rows[0].cpu_percent_avg, rows[0].cpu_percent_max) == (3, 20.0, 30.0)
    assert rows[0].ram_used_max == 1040
    assert (rows[1].cpu_percent_avg, rows[1].gpu_percent_avg) == (40.0, None)


@pytest.mark.django_db
def test_it_rolls_each_minute_up_once() -> None:
    fill()
    assert roll_up(T0 + timedelta(minutes=3)) == 2
    assert roll_up(T0 + timedelta(minutes=3)) == 0
    assert roll_up(T0 + timedelta(minutes=10)) == 1
    assert Rollup.objects.count() == 3


@pytest.mark.django_db
def test_it_rolls_up_one_node_without_touching_another() -> None:
    fill("orin-1")
    fill("orin-2")
    roll_up(T0 + timedelta(minutes=5), Node.objects.get(name="orin-2"))
    assert set(Rollup.objects.values_list("node__name", flat=True)) == {"orin-2"}


@pytest.mark.django_db
def test_it_prunes_raw_samples_and_rollups_by_their_own_retention() -> None:
    fill()
    roll_up(T0 + timedelta(minutes=5))
    # 24 h after 12:01:30, the samples before it are gone and the rollups stay.
    samples, rollups = prune(T0 + timedelta(hours=24, seconds=90), raw_hours=24, rollup_days=30)
    assert (samples, rollups) == (4, 0)
    assert list(Sample.objects.values_list("cpu_percent", flat=True)) == [50.0]
    samples, rollups = prune(T0 + timedelta(days=30, minutes=1, seconds=30), raw_hours=24, rollup_days=30)
    assert (samples, rollups) == (1, 2)


@pytest.mark.django_db
def test_the_command_rolls_up_and_prunes(settings: object) -> None:
    settings.MONITOR_RAW_RETENTION_HOURS = 24  # type: ignore[attr-defined]
    settings.MONITOR_ROLLUP_RETENTION_DAYS = 365 * 100  # type: ignore[attr-defined]
    fill()
    out = io.StringIO()
    call_command("rollup", stdout=out)
    # Everything in fill() is from 2026-01-01, long before the test runs: rolled up, then raw deleted.
    assert Sample.objects.count() == 0
    assert Rollup.objects.count() == 3
    assert out.getvalue().strip() == "3 rollups made, 5 samples and 0 rollups deleted"
