"""Fast, exact conversion between the exchange's ISO-8601 timestamps and epoch seconds.

The exchange sends ``2025-12-06T05:45:36.037320Z`` and sometimes nanosecond fractions, which
``datetime.fromisoformat`` rejects; this parser takes any fraction and is several times faster.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime


class TimestampError(ValueError):
    pass


def parse_ts(text: str) -> float:
    """Epoch seconds (UTC) from ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)``."""
    try:
        if text[4] != "-" or text[7] != "-" or text[10] not in "T " or text[13] != ":":
            raise TimestampError(f"not an ISO-8601 timestamp: {text!r}")
        year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
        hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
        if not (
            1 <= month <= 12
            and 1 <= day <= calendar.monthrange(year, month)[1]
            and 0 <= hour < 24
            and 0 <= minute < 60
            and 0 <= second < 60
        ):
            raise TimestampError(f"timestamp out of range: {text!r}")
        whole = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        rest = text[19:]
        frac = 0.0
        if rest.startswith("."):
            end = 1
            while end < len(rest) and rest[end].isdigit():
                end += 1
            digits = rest[1:end]
            frac = int(digits) / 10 ** len(digits) if digits else 0.0
            rest = rest[end:]
        if rest not in ("Z", "+00:00", ""):
            raise TimestampError(f"timestamp not in UTC: {text!r}")
        return whole + frac
    except (IndexError, ValueError) as exc:
        if isinstance(exc, TimestampError):
            raise
        raise TimestampError(f"unparseable timestamp: {text!r}") from exc


def format_ts(epoch: float) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``, the exchange's own format."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
