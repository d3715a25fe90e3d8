"""Query parameter declarations: a value is accepted exactly when it matches the pattern the document shows, and
means what it says; anything else is a 400 naming the parameter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from gateway import errors, params

SINCE = params.Time("since", "")
AGO = params.TimeOrAgo("since", "", default="1h")
LIMIT = params.Integer("limit", "", low=1, high=500, default=50)
STATUS = params.StatusFilter("status", "")


def refused(param: params.Param, text: str) -> bool:
    try:
        param.parse({param.name: text})
    except errors.APIError as exc:
        assert (exc.status, exc.param) == (400, param.name)
        return True
    return False


def test_it_reads_the_times_the_pattern_admits() -> None:
    assert SINCE.parse({"since": "2024-02-29"}) == datetime(2024, 2, 29, tzinfo=UTC)
    assert SINCE.parse({"since": "2026-11-01T12:00:00.5+01:00"}) == datetime(2026, 11, 1, 11, 0, 0, 500000, tzinfo=UTC)
    # An unencoded "+" arrives as a space.
    assert SINCE.parse({"since": "2026-11-01 12:00 01:00"}) == datetime(2026, 11, 1, 11, 0, tzinfo=UTC)
    assert SINCE.parse({"since": "1790000000"}) == datetime.fromtimestamp(1790000000, tz=UTC)
    assert SINCE.parse({"since": ""}) is None


@pytest.mark.parametrize("text", ["2023-02-29", "2026-04-31", "2026-13-01", "0000-01-01", "yesterday", "1e9", "²"])
def test_it_refuses_what_the_pattern_does_not_admit(text: str) -> None:
    assert not re.fullmatch(SINCE.schema()["pattern"], text)
    assert refused(SINCE, text)


def test_it_keeps_times_at_the_ends_of_the_calendar_in_range() -> None:
    # Year 1 at +23:59 is before what a datetime holds in UTC: clamped, as no row is older anyway.
    assert SINCE.parse({"since": "0001-01-01T00:00+23:59"}) == params.EARLIEST
    assert SINCE.parse({"since": "9999-12-31T23:59-23:59"}) == params.LATEST
    now = timezone.now()
    assert params.back_from(now, AGO.parse({"since": "99999999999d"})) == params.EARLIEST
    assert now - timedelta(hours=1, seconds=5) < params.back_from(now, AGO.parse({})) <= now - timedelta(hours=1)


def test_it_bounds_integers() -> None:
    assert LIMIT.parse({}) == 50
    assert LIMIT.parse({"limit": "500"}) == 500
    assert all(refused(LIMIT, text) for text in ("0", "501", "-1", "ten", "1.5", "9" * 5000))


def test_it_reads_a_status_or_a_class_as_a_range() -> None:
    assert STATUS.parse({"status": "404"}) == (404, 405)
    assert STATUS.parse({"status": "5xx"}) == (500, 600)
    assert all(refused(STATUS, text) for text in ("600", "6xx", "²00", "40"))


def test_it_documents_what_it_parses() -> None:
    assert LIMIT.openapi() == {
        "name": "limit",
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
    }
    choice = params.Choice("group", "", choices=("hour", "day"))
    assert choice.openapi()["schema"] == {"type": "string", "enum": ["hour", "day"], "default": "hour"}
    assert refused(choice, "week")
