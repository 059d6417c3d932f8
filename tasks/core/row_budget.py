"""The row budget of a training read: which whole days of each product to keep. Pure.

A store of many products and months holds more 1-second rows than one machine should train on.
The budget caps the rows per product; what is kept is whole days, spread evenly over the product's
history (so every regime the store saw is represented), never rows drawn at random inside a
window: the rows of a kept day stay contiguous, so time-ordered splits and their embargo mean
what they say. A day is the smallest unit: a product whose single day exceeds the budget keeps
that one day.
"""

from __future__ import annotations

import numpy as np


def pick_days(rows_per_day: dict[str, int], max_rows: int | None) -> list[str]:
    """The days (``YYYY-MM-DD``) of one product to keep under ``max_rows`` (None: all of them)."""
    days = sorted(rows_per_day)
    if max_rows is None or sum(rows_per_day.values()) <= max_rows:
        return days
    counts = np.array([rows_per_day[d] for d in days])
    keep = len(days)
    chosen = np.arange(keep)
    while keep > 1 and counts[chosen].sum() > max_rows:
        keep -= 1
        chosen = np.unique(np.round(np.linspace(0, len(days) - 1, keep)).astype(int))
    return [days[i] for i in chosen]
