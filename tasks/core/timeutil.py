"""Fast, exact conversion between the exchange's ISO-8601 timestamps and epoch seconds.

The exchange sends ``2025-12-06T05:45:36.037320Z`` and sometimes nanosecond fractions, which
``datetime.fromisoformat`` rejects; this parser takes any fraction and is several times faster.
"""

from __future__ import annotations

import calendar
import functools
from datetime import UTC, datetime


class TimestampError(ValueError):
    pass


def parse_ts(text: str) -> float:
    """Epoch seconds (UTC) from ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)``."""
    whole = _whole_seconds(text[:19])
    if whole.__class__ is str:
        raise TimestampError(f"{whole}: {text!r}")
    rest = text[19:]
    digits = rest[1:-1]
    if rest[:1] == "." and rest[-1:] == "Z" and digits.isascii() and digits.isdigit():
        return whole + int(digits) / 10 ** len(digits)  # the exchange's own form, quickly
    try:
        frac = 0.0
        if rest.startswith("."):
            end = 1
            while end < len(rest) and rest[end].isdigit():
                end += 1
            digits = rest[1:end]
            frac = int(digits) / 10 ** len(digits) if digits else 0.0
            rest = rest[end:]
    except ValueError as exc:
        raise TimestampError(f"unparseable timestamp: {text!r}") from exc
    if rest not in ("Z", "+00:00", ""):
        raise TimestampError(f"timestamp not in UTC: {text!r}")
    return whole + frac


@functools.lru_cache(maxsize=4096)
def _whole_seconds(head: str) -> int | str:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS``, or what is wrong with it. Cached: most ticks
    share their second with the tick before."""
    try:
        if head[4] != "-" or head[7] != "-" or head[10] not in "T " or head[13] != ":":
            return "not an ISO-8601 timestamp"
        year, month, day = int(head[0:4]), int(head[5:7]), int(head[8:10])
        hour, minute, second = int(head[11:13]), int(head[14:16]), int(head[17:19])
        if not (
            1 <= month <= 12
            and 1 <= day <= calendar.monthrange(year, month)[1]
            and 0 <= hour < 24
            and 0 <= minute < 60
            and 0 <= second < 60
        ):
            return "timestamp out of range"
        return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (IndexError, ValueError):
        return "unparseable timestamp"


def format_ts(epoch: float) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``, the exchange's own format."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
