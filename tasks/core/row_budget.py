"""The row budget of a training read: which rows of each product's days to keep. Pure.

A store of many products and months holds more 1-second rows than one machine should train on. Two
caps bound it: one per product, and one on the total, which :func:`product_budget` turns into an
equal share per product, so the rows used (and the memory training takes) stay within the total
however many products and days the store holds. Within a product's budget, every day of the product
keeps one session: contiguous rows from the middle of the day, an equal share of the budget each
(the whole day when it is shorter), so every regime the store saw is represented. When a share would
be shorter than ``min_session_rows``, fewer days, spread evenly from the first to the last, keep
sessions of that length. Rows are never drawn at random inside a window: a session's rows stay
contiguous, so time-ordered splits and their embargo mean what they say.
"""

from __future__ import annotations

import numpy as np

MIN_SESSION_ROWS = 3600  # an hour of 1-second rows: well past the embargo and the label horizon


def pick_sessions(
    rows_per_day: dict[str, int], max_rows: int | None, min_session_rows: int = MIN_SESSION_ROWS
) -> dict[str, tuple[int, int]]:
    """Per kept day (``YYYY-MM-DD``), the ``(start, stop)`` positions of the rows to keep among
    that day's rows in time order; every row when ``max_rows`` is None or not exceeded."""
    days = sorted(rows_per_day)
    if max_rows is None or sum(rows_per_day.values()) <= max_rows:
        return {day: (0, rows_per_day[day]) for day in days}
    share = max_rows // len(days)
    if share < min_session_rows:
        count = max(1, max_rows // min_session_rows)
        days = [
            days[i] for i in np.unique(np.linspace(0, len(days) - 1, count).round().astype(int))
        ]
        share = max_rows // len(days)
    kept = {}
    for day in days:
        rows = rows_per_day[day]
        start = max(0, (rows - share) // 2)
        kept[day] = (start, min(rows, start + share))
    return kept


def product_budget(
    max_rows_per_product: int | None, max_rows: int | None, products: int
) -> int | None:
    """The rows each of ``products`` may keep: the per-product cap, lowered to an equal share of
    the total cap ``max_rows`` (None: that cap is not set; both None: every row)."""
    caps = [] if max_rows_per_product is None else [max_rows_per_product]
    if max_rows is not None and products > 0:
        caps.append(max_rows // products)
    return min(caps) if caps else None
