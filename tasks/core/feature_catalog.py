"""What each feature means and its unit, for the people and programs that call the service
(``GET /features``, the OpenAPI schema of ``POST /predict``). Pure.

Features are described by family and matched on the name, so a new window of a known family
(``realized_vol_900``) is described without a new entry. ``docs/features.md`` holds the full
definitions; this is the one-line version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tasks.core.features import FEATURE_NAMES

# (name pattern with {w} for a window in seconds, meaning, unit)
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("log_return_{w}", "log of the mid price now over the mid before the last {w} s", "log return"),
    (
        "realized_vol_1s_{w}",
        "realized volatility of 1-second mid returns over the last {w} s (the label's grid)",
        "log return",
    ),
    (
        "realized_vol_{w}",
        "realized volatility: square root of the summed squared tick returns over {w} s",
        "log return",
    ),
    ("price_velocity_{w}", "mid-price drift over the last {w} s per second", "bps/s"),
    ("range_bps_{w}", "high-low range of the mid price over the last {w} s", "bps"),
    ("spread_bps_mean_{w}", "mean bid-ask spread over the last {w} s", "bps"),
    (
        "imbalance_mean_{w}",
        "mean best-quantity imbalance (bid - ask) / (bid + ask) over the last {w} s",
        "ratio in [-1, 1]",
    ),
    ("tick_intensity_{w}", "ticks per second over the last {w} s", "ticks/s"),
    ("ret_mean", "mean tick return over the last 60 s", "log return"),
    ("ret_std", "standard deviation of the tick returns over the last 60 s", "log return"),
    ("n", "ticks in the last 60 s, the current one included", "ticks"),
    ("spread_bps", "the current tick's bid-ask spread", "bps"),
    ("imbalance", "the current tick's best-quantity imbalance", "ratio in [-1, 1]"),
    (
        "tick_intensity_ratio_{a}_{b}",
        "ticks per second over the last {a} s against their rate over the last {b} s (1: steady)",
        "ratio",
    ),
    (
        "spread_bps_ratio_{a}_{b}",
        "mean bid-ask spread over the last {a} s against its mean over the last {b} s",
        "ratio",
    ),
    (
        "vol_ratio_{a}_{b}",
        "per-second volatility of the last {a} s over that of the last {b} s (1: steady)",
        "ratio",
    ),
)


def _compile(pattern: str) -> re.Pattern[str]:
    escaped = re.escape(pattern).replace(r"\{", "{").replace(r"\}", "}")
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>\\d+)", escaped) + "$")


_MATCHERS = tuple((_compile(p), meaning, unit) for p, meaning, unit in _FAMILIES)


def describe(name: str) -> dict[str, str] | None:
    """``{"name", "meaning", "unit"}`` of a feature, or None for a name no family matches."""
    for pattern, meaning, unit in _MATCHERS:
        found = pattern.match(name)
        if found:
            return {"name": name, "meaning": meaning.format(**found.groupdict()), "unit": unit}
    return None


def catalog(names: Iterable[str] = FEATURE_NAMES) -> list[dict[str, str]]:
    """Every feature in order with its meaning and unit; a name no family matches says so."""
    return [
        describe(name) or {"name": name, "meaning": "(undocumented)", "unit": "unknown"}
        for name in names
    ]
