"""GET /api/metrics/history: a downsampled series from raw samples, or from rollups beyond raw retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.test import Client
from django.utils import timezone

from monitor.models import Node, Rollup
from monitor.tests.samples import make_sample


def aligned(moment: datetime, seconds: int) -> datetime:
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, tz=UTC)


def test_it_buckets_raw_samples_by_step(staff_client: Client) -> None:
    start = aligned(timezone.now() - timedelta(minutes=50), 300)
    for minute in range(10):
        make_sample("orin-1", start + timedelta(minutes=minute), cpu_percent=minute * 10.0)
    make_sample("orin-1", start + timedelta(minutes=10, seconds=5))  # no CPU figure: left out

    body = staff_client.get("/api/metrics/history?metric=cpu_percent&node=orin-1&since=1h&step=5m").json()
    assert (body["source"], body["step"], body["metric"]) == ("raw", 300.0, "cpu_percent")
    first = int(start.timestamp())
    assert body["points"] == [[first, 20.0, 40.0], [first + 300, 70.0, 90.0]]


def test_it_reads_rollups_beyond_raw_retention(staff_client: Client) -> None:
    make_sample("orin-1", timezone.now() - timedelta(seconds=10), power_mw=9000.0)
    node = Node.objects.get(name="orin-1")
    hour = aligned(timezone.now() - timedelta(days=2), 3600)
    Rollup.objects.create(node=node, minute=hour, count=1, power_mw_avg=1000.0, power_mw_max=1000.0)
    Rollup.objects.create(
        node=node, minute=hour + timedelta(minutes=1), count=3, power_mw_avg=3000.0, power_mw_max=5000.0
    )

    body = staff_client.get("/api/metrics/history?metric=power_mw&node=orin-1&since=3d&step=1h").json()
    assert (body["source"], body["step"]) == ("rollup", 3600.0)
    # Weighted by samples per minute: (1000 x 1 + 3000 x 3) / 4.
    assert body["points"][0] == [int(hour.timestamp()), 2500.0, 5000.0]
    # The minutes not rolled up yet come from the raw samples.
    assert body["points"][-1][1:] == [9000.0, 9000.0]
    assert len(body["points"]) == 2


def test_it_caps_the_number_of_points(staff_client: Client) -> None:
    make_sample("orin-1", cpu_percent=1.0)
    body = staff_client.get("/api/metrics/history?metric=cpu_percent&since=7d&step=1").json()
    assert body["step"] == 7 * 86400 / 500


def test_it_refuses_an_unknown_metric(staff_client: Client) -> None:
    make_sample("orin-1")
    response = staff_client.get("/api/metrics/history?metric=cpu_load")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "metric")


def test_it_refuses_a_bad_since(staff_client: Client) -> None:
    make_sample("orin-1")
    response = staff_client.get("/api/metrics/history?metric=cpu_percent&since=yesterday")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "since"


def test_it_accepts_an_iso_since(staff_client: Client) -> None:
    now = timezone.now()
    make_sample("orin-1", now - timedelta(minutes=30), temp_max=50.0)
    make_sample("orin-1", now - timedelta(minutes=5), temp_max=60.0)
    since = (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = staff_client.get(f"/api/metrics/history?metric=temp_max&since={since}").json()
    assert [point[1] for point in body["points"]] == [60.0]
    # The same time with an offset whose "+" the client forgot to encode.
    offset = (now - timedelta(minutes=10)).isoformat(timespec="seconds")
    body = staff_client.get(f"/api/metrics/history?metric=temp_max&since={offset}").json()
    assert [point[1] for point in body["points"]] == [60.0]


def test_it_takes_a_since_further_back_than_the_calendar(staff_client: Client) -> None:
    make_sample("orin-1", cpu_percent=12.0)
    body = staff_client.get("/api/metrics/history?metric=cpu_percent&since=99999999999d").json()
    assert body["source"] == "rollup"
    assert staff_client.get("/api/metrics/history?metric=cpu_percent&since=0").status_code == 400
    assert staff_client.get("/api/metrics/history?metric=cpu_percent&step=1e3").status_code == 400
