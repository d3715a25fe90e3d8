"""The sampler writes each lease's share of the board's energy as an energy fact of its own, keyed by its request id,
as soon as the power readings cover the lease, from what the node's supervisor tells it: the leases in flight and
each one's start and end, on the monotonic clock they share. No request-log row is needed, waited for or updated."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from django.db import DatabaseError

from gateway.models import EnergyFact, RequestLog
from monitor.energy import NodeLink
from monitor.power import PowerSampler
from monitor.tests.energy import FakeBoard, sampled

WATTS = 12.0


@pytest.fixture
def t0() -> float:
    """The fake clock starts when the test does: the sampler shares a lease the readings have not reached
    STALL_SECONDS after its end (on the real clock) as far as they went, so a start taken when the module was
    collected, minutes earlier in a full run, made the long lease look stalled."""
    return time.monotonic()


def told(link: NodeLink, *messages: dict) -> None:
    for message in messages:
        link.heard(message)


def in_flight(n: int, at: float) -> dict:
    return {"op": "in_flight", "n": n, "busy": n, "at": at}


def ended(lease: str, start: float, end: float) -> dict:
    return {"op": "lease_ended", "lease": lease, "model": "qwen", "start": start, "end": end}


@pytest.mark.django_db(transaction=True)
async def test_it_writes_the_shares_of_two_overlapping_requests(thread_connections_closed: None, t0: float) -> None:
    board = FakeBoard(WATTS * 1000, at=t0)
    power = PowerSampler(board, hz=10)
    link = NodeLink("orin-1", power)
    sampled(power, board, until=t0 + 1)
    told(link, in_flight(1, t0 + 1))
    sampled(power, board, until=t0 + 4)
    told(link, in_flight(2, t0 + 4))
    sampled(power, board, until=t0 + 6)
    told(link, in_flight(1, t0 + 6), ended("short.1", t0 + 4, t0 + 6))
    sampled(power, board, until=t0 + 9.5)
    told(link, in_flight(0, t0 + 10), ended("long.1", t0 + 1, t0 + 10))
    await link.settle()  # the end of the long one is not read yet
    assert await sync_to_async(list)(EnergyFact.objects.values_list("request_id", flat=True)) == ["short"]
    sampled(power, board, until=t0 + 10)
    await link.settle()
    facts = {fact.request_id: fact for fact in await sync_to_async(list)(EnergyFact.objects.all())}
    # Alone for 3 s and 4 s, half of the 2 s they overlap each.
    assert facts["long"].gross_mj == pytest.approx(WATTS * (3 + 1 + 4) * 1000)
    assert facts["short"].gross_mj == pytest.approx(WATTS * 1 * 1000)
    long = facts["long"]
    assert (long.lease, long.node, long.model, long.source) == ("long.1", "orin-1", "qwen", "VDD_IN")
    assert (long.seconds, long.measured_seconds) == pytest.approx((9.0, 9.0))
    assert (long.end - long.start).total_seconds() == pytest.approx(9.0, abs=1e-3)  # shown in wall-clock time
    assert long.net_mj is None  # no idle power known yet
    assert not await sync_to_async(RequestLog.objects.exists)()  # no row was needed
    await link.settle()
    assert await sync_to_async(EnergyFact.objects.count)() == 2  # each written once


@pytest.mark.django_db(transaction=True)
async def test_it_keeps_the_facts_the_database_refused_for_the_next_time(
    thread_connections_closed: None, monkeypatch: pytest.MonkeyPatch, t0: float
) -> None:
    board = FakeBoard(WATTS * 1000, at=t0)
    power = PowerSampler(board, hz=10)
    link = NodeLink("orin-1", power)
    sampled(power, board, until=t0 + 1)
    told(link, in_flight(1, t0 + 1))
    sampled(power, board, until=t0 + 3)
    told(link, in_flight(0, t0 + 3), ended("request.1", t0 + 1, t0 + 3))
    sampled(power, board, until=t0 + 4)

    def refused(*args: object, **kwargs: object) -> None:
        raise DatabaseError("the database is restarting")

    with monkeypatch.context() as patched:
        patched.setattr(EnergyFact.objects, "bulk_create", refused)
        with pytest.raises(DatabaseError):
            await link.settle()
    await link.settle()
    fact = await sync_to_async(EnergyFact.objects.get)()
    assert (fact.request_id, fact.gross_mj) == ("request", pytest.approx(WATTS * 2 * 1000))
