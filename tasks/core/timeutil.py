"""Fast, exact conversion between the exchange's ISO-8601 timestamps and epoch seconds.

The exchange sends ``2025-12-06T05:45:36.037320Z`` and sometimes nanosecond fractions, which
``datetime.fromisoformat`` rejects; this parser takes any fraction and is several times faster.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np


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


# the exchange's own form, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: where its digits and separators lie
_FAST_LEN = 27
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, *range(20, 26)])
_SEPARATORS = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: ".", 26: "Z"}


def parse_ts_many(texts: Sequence[str]) -> np.ndarray:
    """:func:`parse_ts` of each text at once, NaN where it raises.

    Texts in the exchange's own form with a valid date are computed on whole columns (the same
    integer and float steps as :func:`parse_ts`, so the same bits); any other text is given to
    :func:`parse_ts` itself."""
    n = len(texts)
    out = np.full(n, np.nan)
    joined = "".join(texts)
    if len(joined) == n * _FAST_LEN and joined.isascii():  # the usual case: one buffer of bytes
        chars = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(n, _FAST_LEN)
        fast = np.ones(n, dtype=bool)
    else:
        codes = np.array(texts, dtype=f"U{_FAST_LEN}").reshape(n)
        chars = codes.view(np.uint32).reshape(n, _FAST_LEN)
        fast = np.fromiter((len(t) == _FAST_LEN for t in texts), dtype=bool, count=n)
    digits = chars[:, _DIGITS].astype(np.int64) - ord("0")
    fast &= ((digits >= 0) & (digits <= 9)).all(axis=1)
    for position, separator in _SEPARATORS.items():
        fast &= chars[:, position] == ord(separator)
    d = digits.T
    year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
    month, day = d[4] * 10 + d[5], d[6] * 10 + d[7]
    hour, minute, second = d[8] * 10 + d[9], d[10] * 10 + d[11], d[12] * 10 + d[13]
    micros = ((((d[14] * 10 + d[15]) * 10 + d[16]) * 10 + d[17]) * 10 + d[18]) * 10 + d[19]
    days = _days_from_civil(year, month, day)
    month_days = _days_from_civil(year + (month == 12), month % 12 + 1, np.ones_like(day)) - (
        days - day + 1
    )
    fast &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    fast &= (hour < 24) & (minute < 60) & (second < 60)
    whole = days * 86_400 + hour * 3_600 + minute * 60 + second
    out[fast] = whole[fast].astype(np.float64) + micros[fast].astype(np.float64) / 1e6
    for i in np.flatnonzero(~fast).tolist():
        with contextlib.suppress(TimestampError, TypeError):
            out[i] = parse_ts(texts[i])
    return out


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (Howard Hinnant's algorithm); any
    integers in, garbage out for invalid dates (the caller checks them)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    shifted_month = (month + 9) % 12  # March is 0
    day_of_year = (153 * shifted_month + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def format_ts(epoch: float) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``, the exchange's own format."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
