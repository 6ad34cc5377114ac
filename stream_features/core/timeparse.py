"""Timestamps: every accepted input shape to Unix seconds (float), and back to ISO 8601 UTC."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import msgspec

from ..errors import InvalidQuery
from .limits import MAX_UNIX_SECONDS, MIN_UNIX_SECONDS

TimestampInput = datetime | str | int | float

# A query may look far back (features before 1970 are simply empty); from year 100 on, so that a
# window's days before it still have dates.
MIN_AS_OF_SECONDS = -59011459200.0  # 0100-01-01T00:00:00Z
# A string of digits (with an optional fraction) is Unix seconds everywhere (events, HTTP, CLI,
# Python): "20261126" would otherwise be an ISO 8601 basic date in one place and seconds in another.
_UNIX_TEXT = re.compile(r"\s*\d{1,20}(?:\.\d{1,20})?\s*")
# A UTC offset at the end of a time: ±HH, ±HHMM, ±HH:MM (seconds too). Hours 0..23, minutes 0..59
# (msgspec's RFC 3339 parser lets "+01:99" through).
_OFFSET = re.compile(r"[T t]\d[\d:.,]*([+-])(\d\d)(?::?(\d\d)(?::?(\d\d)(?:\.\d+)?)?)?\s*$")


def datetime_to_unix(value: datetime) -> float:
    """An aware datetime to Unix seconds; a naive one is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def parse_timestamp(value: object, *, earliest: float = MIN_UNIX_SECONDS) -> float:
    """Parse an event or query timestamp to Unix seconds.

    Accepts RFC 3339 / ISO 8601 strings (``Z``, ``+02:00`` offsets, fractional seconds, no
    offset = UTC), JSON numbers (Unix seconds) and strings of digits (Unix seconds too, one
    reading everywhere), and ``datetime`` objects (naive = UTC). Raises
    ``ValueError`` with a readable message for anything else. Strings are read by msgspec's
    RFC 3339 parser first (the one the consumer's typed fast path uses, so both paths agree;
    fractions beyond microseconds are rounded), then by ``datetime.fromisoformat`` for the other
    ISO 8601 shapes (date only, basic format, surrounding spaces...).

    >>> parse_timestamp("1970-01-01T01:00:00+01:00")
    0.0
    >>> parse_timestamp(86400)
    86400.0
    >>> parse_timestamp("86400")
    86400.0
    """
    if isinstance(value, bool):
        raise ValueError("timestamp must be an ISO 8601 string or Unix seconds, not a boolean")
    if isinstance(value, datetime):
        seconds = datetime_to_unix(value)
    elif isinstance(value, int):
        if not earliest <= value <= MAX_UNIX_SECONDS:  # before float(): 10**400 overflows it
            raise ValueError(f"timestamp is outside {unix_to_iso(earliest)[:10]}..9999-12-31")
        seconds = float(value)
    elif isinstance(value, float):
        seconds = value + 0.0  # -0.0 is 0.0
        if not math.isfinite(seconds):
            raise ValueError("timestamp is not finite")
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError("timestamp must be an ISO 8601 string or Unix seconds")
    if not earliest <= seconds <= MAX_UNIX_SECONDS:
        raise ValueError(f"timestamp is outside {unix_to_iso(earliest)[:10]}..9999-12-31")
    return seconds


def _parse_text(value: str) -> float:
    if len(value) > 64:
        raise ValueError("timestamp string is longer than 64 characters")
    if _UNIX_TEXT.fullmatch(value):
        return float(value) + 0.0
    offset = _OFFSET.search(value)
    if offset and (int(offset[2]) > 23 or int(offset[3] or 0) > 59 or int(offset[4] or 0) > 59):
        raise ValueError(f"timestamp {value!r} has an impossible UTC offset")
    try:
        return datetime_to_unix(msgspec.convert(value, datetime))
    except msgspec.ValidationError:
        pass
    text = value.strip()
    if not text:
        raise ValueError("timestamp string is empty")
    try:
        return datetime_to_unix(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"timestamp {value[:64]!r} is not ISO 8601") from None


def parse_as_of(value: object, *, now: float) -> float:
    """A query's ``as_of``: None means now; otherwise any shape ``parse_timestamp`` accepts,
    from year 100 on (an event's time must be 1970 or later; a question may be about the past)."""
    if value is None:
        return now
    try:
        return parse_timestamp(value, earliest=MIN_AS_OF_SECONDS)
    except ValueError as exc:
        raise InvalidQuery(f"as_of: {exc}") from None


def unix_to_iso(seconds: float) -> str:
    """Unix seconds to ISO 8601 in UTC with a ``Z`` suffix (microseconds only when present).

    >>> unix_to_iso(0)
    '1970-01-01T00:00:00Z'
    """
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")
