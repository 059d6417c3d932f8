"""The row budget keeps whole days, spread over a product's history."""

from __future__ import annotations

from tasks.core.row_budget import pick_days

WEEK = {f"2026-01-0{d}": 86_400 for d in range(1, 8)}


def test_no_budget_or_enough_room_keeps_every_day():
    assert pick_days(WEEK, None) == sorted(WEEK)
    assert pick_days(WEEK, 7 * 86_400) == sorted(WEEK)


def test_a_budget_keeps_whole_days_spread_from_first_to_last():
    kept = pick_days(WEEK, 3 * 86_400 + 5)
    assert kept == ["2026-01-01", "2026-01-04", "2026-01-07"]


def test_uneven_days_stay_within_the_budget():
    days = {"2026-01-01": 10, "2026-01-02": 500, "2026-01-03": 10, "2026-01-04": 10}
    kept = pick_days(days, 100)
    assert sum(days[d] for d in kept) <= 100
    assert kept == ["2026-01-01", "2026-01-03", "2026-01-04"]


def test_a_day_larger_than_the_budget_is_kept_whole():
    assert pick_days(WEEK, 1000) == ["2026-01-01"]
