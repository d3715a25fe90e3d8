"""Query parameters declared once: a read API parses its parameters with these objects, and the OpenAPI document
describes them from the same objects, so what the document promises and what the view accepts cannot drift.

Each parameter checks a value with one regular expression (ASCII classes only, so that Python, ECMAScript and the
document's readers agree on it) and the document shows that expression as the parameter's `pattern`. An empty
value is the same as leaving an optional parameter out (`allowEmptyValue`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from gateway import errors

# --- Times ---------------------------------------------------------------------------------------------------------

# Only real calendar days: hypothesis-style clients draw from the pattern, and "2026-02-30" must not match it.
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME_OF_DAY = "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.][0-9]{1,6})?)?"
# A space stands for "+": an unencoded "+01:00" in a query string arrives as " 01:00".
_OFFSET = "(?:Z|[-+ ](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
ISO_TIME = f"{_DATE}(?:[T ]{_TIME_OF_DAY}{_OFFSET}?)?"
UNIX_SECONDS = "[0-9]{1,11}(?:[.][0-9]{1,6})?"
# A positive number of seconds, minutes, hours or days: 90, 15m, 6h, 7d.
DURATION = "(?:[0-9]*[1-9][0-9]*(?:[.][0-9]+)?|[0-9]+[.][0-9]*[1-9][0-9]*)[smhd]?"
_SPACE_BEFORE_OFFSET = re.compile(r"(:[0-9]{2}(?:[.][0-9]{1,6})?) ([0-9]{2}:?[0-9]{2})$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Times are kept where every later step (UTC conversion, the database, a day's bucket after it) stays in range:
# no row lies beyond these, so a filter clamped to them selects the same rows.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _clamp(moment: datetime) -> datetime:
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        return EARLIEST if moment.year == 1 else LATEST
    return min(max(moment, EARLIEST), LATEST)


def iso_time(text: str) -> datetime:
    """A time matching ISO_TIME; naive values are in TIME_ZONE."""
    value = datetime.fromisoformat(_SPACE_BEFORE_OFFSET.sub(r"\1+\2", text))
    return _clamp(timezone.make_aware(value) if timezone.is_naive(value) else value)


def duration_seconds(text: str) -> float:
    """Seconds of a duration matching DURATION, at most the span of representable times."""
    number, unit = (text[:-1], text[-1]) if text[-1] in "smhd" else (text, "")
    return min(float(number) * _UNITS[unit], (LATEST - EARLIEST).total_seconds())


# Any text but NUL, which no database column may hold (DRF's CharField refuses it in request bodies too).
ANY_TEXT = "[^\\x00]*"

# --- Declarations --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, the expression a value must match, and what a matching value means."""

    name: str
    description: str
    pattern: str = ANY_TEXT
    expects: str = "must not contain NUL characters"
    required: bool = False
    default: Any = None
    example: str | None = None

    def convert(self, text: str) -> Any:
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^(?:{self.pattern})$"}

    def openapi(self) -> dict[str, Any]:
        schema = self.schema()
        if self.default is not None:
            schema["default"] = self.default
        if self.example is not None:
            schema["example"] = self.example
        parameter = {"name": self.name, "in": "query", "required": self.required, "schema": schema}
        if not self.required:
            parameter["allowEmptyValue"] = True
        if self.description:
            parameter["description"] = self.description
        return parameter

    def parse(self, query: Mapping[str, str]) -> Any:
        """The value in `query`, converted; the default when absent or empty; else APIError 400 naming it."""
        text = query.get(self.name, "")
        if text == "" and not self.required:
            # A default is documented as the text a client would send, and means the same.
            return self.convert(self.default) if isinstance(self.default, str) else self.default
        if not re.fullmatch(self.pattern, text):
            raise errors.invalid(f"'{self.name}' {self.expects}.", param=self.name)
        return self.convert(text)


@dataclass(frozen=True)
class Choice(Param):
    choices: tuple[str, ...] = ()
    expects: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", "|".join(re.escape(choice) for choice in self.choices))
        object.__setattr__(self, "expects", f"must be one of: {', '.join(self.choices)}")
        if self.default is None and not self.required:
            object.__setattr__(self, "default", self.choices[0])

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Integer(Param):
    low: int = 0
    high: int = 0
    pattern: str = "-?[0-9]{1,18}"  # Python refuses to read thousands of digits

    def __post_init__(self) -> None:
        object.__setattr__(self, "expects", f"must be an integer from {self.low} to {self.high}")

    def parse(self, query: Mapping[str, str]) -> Any:
        value = super().parse(query)
        if value is not None and not self.low <= value <= self.high:
            raise errors.invalid(f"'{self.name}' {self.expects}.", param=self.name)
        return value

    def convert(self, text: str) -> int:
        return int(text)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Time(Param):
    """An ISO 8601 date or date-time, or Unix seconds."""

    pattern: str = f"{ISO_TIME}|{UNIX_SECONDS}"
    expects: str = "must be an ISO 8601 date or date-time, or Unix seconds"
    example: str | None = "2026-11-01T00:00:00Z"

    def convert(self, text: str) -> datetime:
        if re.fullmatch(UNIX_SECONDS, text):
            return _clamp(datetime.fromtimestamp(float(text), tz=UTC))
        return iso_time(text)


@dataclass(frozen=True)
class Duration(Param):
    pattern: str = DURATION
    expects: str = "must be a duration such as 90, 15m, 6h or 7d"
    example: str | None = "5m"

    def convert(self, text: str) -> float:
        return duration_seconds(text)


@dataclass(frozen=True)
class TimeOrAgo(Param):
    """A duration back from now (a timedelta, see `back_from`), or an ISO 8601 date or date-time."""

    pattern: str = f"{DURATION}|{ISO_TIME}"
    expects: str = "must be a duration such as 90, 15m, 6h or 7d, or an ISO 8601 date or date-time"
    example: str | None = "6h"

    def convert(self, text: str) -> datetime | timedelta:
        if re.fullmatch(DURATION, text):
            return timedelta(seconds=duration_seconds(text))
        return iso_time(text)


def back_from(now: datetime, value: datetime | timedelta) -> datetime:
    """A TimeOrAgo value as a time: a duration counts back from `now`, to EARLIEST at most."""
    return now - min(value, now - EARLIEST) if isinstance(value, timedelta) else value


@dataclass(frozen=True)
class StatusFilter(Param):
    """An HTTP status (404) or a class (5xx), as the range [low, high) of statuses."""

    pattern: str = "[1-5]xx|[1-5][0-9]{2}"
    expects: str = "must be an HTTP status (e.g. 404) or a class (e.g. 5xx)"
    example: str | None = "5xx"

    def convert(self, text: str) -> tuple[int, int]:
        if text.endswith("xx"):
            return int(text[0]) * 100, int(text[0]) * 100 + 100
        return int(text), int(text) + 1


def read(query: Mapping[str, str], declared: Iterable[Param]) -> dict[str, Any]:
    """Every declared parameter's value, by name: a view reads its query through its declaration only."""
    return {param.name: param.parse(query) for param in declared}
