"""Human durations ("90s", "15m", "3d", "2w") and timestamps, converted once at the API edge."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["parse_duration", "to_epoch_ms"]

_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+|inf)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(value: str | float | int | timedelta) -> float:
    """Seconds in a duration given as ``"3d"``-style text, a number of seconds, or a timedelta.

    Units: ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``; a bare number is seconds; ``"inf"`` is
    infinite (no decay). Raises ``ValueError`` for anything else, including negative values.

    Examples
    --------
    >>> parse_duration("3d"), parse_duration("90s"), parse_duration(1.5), parse_duration("inf")
    (259200.0, 90.0, 1.5, inf)
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"invalid duration {value!r}: use a number and a unit (ms s m h d w), e.g. '3d'")
        number, unit = match.groups()
        seconds = float(number) * _UNIT_SECONDS[unit or "s"] if number != "inf" else math.inf
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be >= 0")
    return seconds


def to_epoch_ms(value: datetime | str | int) -> int:
    """Epoch milliseconds from a timezone-aware datetime, an ISO-8601 string with a zone, or ms.

    Examples
    --------
    >>> to_epoch_ms("2024-01-01T00:00:00Z"), to_epoch_ms(5)
    (1704067200000, 5)
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid timestamp {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"invalid ISO-8601 timestamp {value!r}") from exc
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no timezone; add one (e.g. 'Z')")
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
