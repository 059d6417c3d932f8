"""The row budget keeps a contiguous session of each day, spread over a product's history."""

from __future__ import annotations

from tasks.core.row_budget import pick_sessions, product_budget

WEEK = {f"2026-01-0{d}": 86_400 for d in range(1, 8)}


def test_no_budget_or_enough_room_keeps_every_row():
    every = {day: (0, 86_400) for day in WEEK}
    assert pick_sessions(WEEK, None) == every
    assert pick_sessions(WEEK, 7 * 86_400) == every


def test_each_day_keeps_a_contiguous_session_from_its_middle():
    kept = pick_sessions(WEEK, 70_000)
    assert list(kept) == sorted(WEEK)
    assert set(kept.values()) == {(38_200, 48_200)}  # 10,000 rows around noon
    assert sum(stop - start for start, stop in kept.values()) <= 70_000


def test_a_short_day_is_kept_whole():
    days = {"2026-01-01": 500, "2026-01-02": 20_000}
    assert pick_sessions(days, 8_000, min_session_rows=1000) == {
        "2026-01-01": (0, 500),
        "2026-01-02": (8_000, 12_000),
    }


def test_sessions_stay_an_hour_long_on_fewer_days_spread_first_to_last():
    kept = pick_sessions(WEEK, 10_000)
    assert list(kept) == ["2026-01-01", "2026-01-07"]
    assert all(stop - start == 5_000 for start, stop in kept.values())
    assert list(pick_sessions(WEEK, 1_000)) == ["2026-01-01"]  # never less than one session


def test_the_total_budget_is_shared_equally_between_products():
    assert product_budget(100_000, 1_000_000, 20) == 50_000  # the total binds
    assert product_budget(100_000, 1_000_000, 4) == 100_000  # the per-product cap binds
    assert product_budget(None, 1_000_000, 3) == 333_333
    assert product_budget(100_000, None, 20) == 100_000
    assert product_budget(None, None, 20) is None


def test_rows_kept_stay_within_the_total_whatever_the_products_and_days():
    for products, days in ((1, 1), (4, 2), (20, 7), (50, 30), (300, 3)):
        week = {f"2026-01-{d + 1:02d}": 86_400 for d in range(days)}
        budget = product_budget(100_000, 1_000_000, products)
        kept = products * sum(stop - start for start, stop in pick_sessions(week, budget).values())
        assert kept <= 1_000_000
        assert kept >= min(products * days * 86_400, products * (budget - days))  # nearly all
