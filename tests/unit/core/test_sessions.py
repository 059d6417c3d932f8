"""Sessions and days, leave-one-out splits over either, spike bursts, judging and the worst
held-out day."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core.sessions import (
    SessionPart,
    day_ids,
    judge_by_session,
    judge_sessions,
    leave_one_day_out,
    leave_one_session_out,
    session_ids,
    shortfalls,
    spike_episodes,
    worst_gap,
)
from tasks.core.timeutil import parse_ts

T0 = 1.76e9


def _three_sessions() -> np.ndarray:
    """Two products, three stretches of 40 min separated by gaps of 2 h and 45 min."""
    stretches = [np.arange(2400.0), np.arange(2400.0) + 9600, np.arange(2400.0) + 14700]
    return np.repeat(np.concatenate(stretches), 2) + T0


def test_sessions_start_after_long_pauses_whatever_the_row_order():
    times = _three_sessions()
    shuffled = np.random.default_rng(0).permutation(len(times))
    ids = session_ids(times[shuffled], gap_s=1800)
    assert sorted(set(ids)) == [0, 1, 2]
    assert np.array_equal(ids[np.argsort(shuffled)], session_ids(times, gap_s=1800))
    # a pause shorter than the gap (between files of one session) starts nothing
    assert len(set(session_ids(np.array([0.0, 100.0, 1700.0]) + T0, gap_s=1800))) == 1
    assert session_ids(np.empty(0)).shape == (0,)


def test_each_session_is_left_out_once_behind_an_embargo():
    times = _three_sessions()
    times = np.concatenate([times, [T0 + 2400 + 100]])  # a row just after session 0 ends
    folds = leave_one_session_out(times, gap_s=1800, embargo_s=360, min_rows=600)
    assert [f.session for f in folds] == [0, 1, 2]
    for fold in folds:
        held = times[fold.test]
        assert held.min() == fold.start and held.max() == fold.end
        trained = times[fold.train]
        assert not set(fold.train) & set(fold.test)
        assert np.all((trained < fold.start - 360) | (trained > fold.end + 360))
    # the stray row belongs to session 0 (100 s after it) and is never trained on beside it
    assert len(folds[0].test) == 4801


def test_short_sessions_are_trained_on_but_never_held_out():
    times = np.concatenate([np.arange(3000.0), np.arange(300.0) + 9000]) + T0
    assert leave_one_session_out(times, min_rows=600) == []  # one long session: nothing to do
    three = np.concatenate([times, np.arange(3000.0) + 20000 + T0])
    folds = leave_one_session_out(three, min_rows=600)
    assert [f.session for f in folds] == [0, 2]
    assert any(times[-1] in three[f.train] for f in folds)


def test_spike_rows_in_one_burst_are_one_episode():
    times = np.arange(1000.0)
    y = np.zeros(1000)
    y[100:140] = 1  # a 40 s burst
    y[500:505] = 1
    y[530] = 1  # 25 s after the previous burst: the same episode
    assert spike_episodes(times, y) == 2
    assert spike_episodes(times, np.zeros(1000)) == 0


def _part(session: int, y, model, persistence, zscore) -> SessionPart:
    times = np.arange(len(y), dtype=float) + session * 10_000
    scores = {
        "model": np.asarray(model),
        "persistence": np.asarray(persistence),
        "zscore": np.asarray(zscore),
    }
    return SessionPart(session, np.asarray(y, dtype=float), times, scores, tau=0.001)


def test_judging_sessions_on_the_same_rows_with_intervals():
    rng = np.random.default_rng(1)
    parts = []
    for session in range(2):
        y = (rng.random(3000) < 0.1).astype(float)
        noise = rng.standard_normal(3000)
        parts.append(_part(session, y, y + noise, y + 2 * noise, noise))
    judged = judge_sessions(parts, min_spikes=20, min_episodes=3, n_boot=100)
    assert [s["session"] for s in judged["sessions"]] == [0, 1]
    pooled = judged["pooled"]
    assert pooled["rows"] == 6000
    assert pooled["pr_auc"]["model"] > pooled["pr_auc"]["persistence"] > pooled["pr_auc"]["zscore"]
    low, high = pooled["interval"]["model"]
    assert low < pooled["pr_auc"]["model"] < high
    gap_low, _ = pooled["minus_persistence"]["model"]
    assert gap_low > 0, "the model's lead over persistence holds in every resample"
    for figures in judged["sessions"]:
        assert figures["enough"] and figures["tau"] == 0.001
        assert figures["start"].startswith("1970-01-01T")
    assert shortfalls(judged, "model") == []
    below = shortfalls(judged, "zscore")
    assert {b["where"] for b in below} == {"pooled", "session 0", "session 1"}


def test_a_session_with_one_burst_is_reported_but_not_judged():
    y = np.zeros(2000)
    y[50:90] = 1  # 40 spike rows, one episode
    part = _part(0, y, -y, y, y)  # the model ranks the burst last
    judged = judge_sessions([part], min_spikes=20, min_episodes=3, n_boot=0)
    figures = judged["sessions"][0]
    assert figures["positives"] == 40 and figures["episodes"] == 1 and not figures["enough"]
    assert figures["pr_auc"]["model"] < figures["pr_auc"]["persistence"]
    assert shortfalls(judged, "model") == [
        {
            "where": "pooled",
            "below": "persistence",
            "gap": pytest.approx(figures["pr_auc"]["model"] - 1.0),
        },
        {
            "where": "pooled",
            "below": "zscore",
            "gap": pytest.approx(figures["pr_auc"]["model"] - 1.0),
        },
    ]


def test_a_session_without_spikes_is_degenerate_not_a_number():
    judged = judge_sessions([_part(0, np.zeros(700), np.ones(700), np.ones(700), np.ones(700))])
    figures = judged["sessions"][0]
    assert figures["degenerate"] and figures["pr_auc"]["model"] is None
    assert "interval" not in figures


def test_judge_by_session_cuts_scored_rows_by_gaps():
    times = _three_sessions()
    y = (np.arange(len(times)) % 50 == 0).astype(float)
    judged = judge_by_session(times, y, {"model": y, "persistence": -y, "zscore": y * 0})
    assert [s["session"] for s in judged["sessions"]] == [0, 1, 2]
    assert judged["pooled"]["pr_auc"]["model"] == 1.0


def _at(iso: str, seconds: float) -> np.ndarray:
    """One row per second for ``seconds`` from ``iso`` (UTC)."""
    return parse_ts(iso) + np.arange(float(seconds))


def test_days_are_utc_dates_and_a_session_past_midnight_stays_on_its_first_day():
    times = np.concatenate(
        [
            _at("2025-11-13T18:36:00Z", 60),
            _at("2025-11-13T23:59:30Z", 120),  # runs into Nov 14
            _at("2025-12-01T05:01:00Z", 600),
            _at("2025-12-01T21:44:00Z", 600),  # another session, the same day
        ]
    )
    shuffled = np.random.default_rng(1).permutation(len(times))
    ids, names = day_ids(times[shuffled])
    assert names == ["2025-11-13", "2025-12-01"]
    in_order = np.empty_like(ids)
    in_order[shuffled] = ids
    assert np.array_equal(in_order, np.repeat([0, 1], [180, 1200]))
    assert day_ids(np.empty(0))[1] == []


def test_each_day_is_left_out_once_behind_an_embargo_and_small_days_only_train():
    times = np.concatenate(
        [
            _at("2025-12-05T23:00:00Z", 3000),  # Dec 5, past midnight
            _at("2025-12-06T00:00:00Z", 3000),  # 10 min after: the same session, Dec 5
            _at("2025-12-07T10:00:00Z", 100),  # too small to hold out
            _at("2025-12-08T10:00:00Z", 1000),
        ]
    )
    folds = leave_one_day_out(times, embargo_s=360, min_rows=120)
    assert [f.session for f in folds] == ["2025-12-05", "2025-12-08"]
    assert len(folds[0].test) == 6000 and len(folds[1].test) == 1000
    for fold in folds:
        trained = times[fold.train]
        assert np.all((trained < fold.start - 360) | (trained > fold.end + 360))
    assert all(
        set(
            np.flatnonzero(
                (times > parse_ts("2025-12-07T00:00:00Z"))
                & (times < parse_ts("2025-12-08T00:00:00Z"))
            )
        )
        <= set(f.train)
        for f in folds
    )
    assert leave_one_day_out(times[:6000]) == []  # one day: nothing to carry over to


def test_the_worst_day_is_judged_only_where_there_are_enough_spikes():
    judged = {
        "sessions": [
            {"enough": True, "degenerate": False, "pr_auc": {"m": 0.6, "persistence": 0.5}},
            {"enough": True, "degenerate": False, "pr_auc": {"m": 0.3, "persistence": 0.5}},
            {"enough": False, "degenerate": False, "pr_auc": {"m": 0.0, "persistence": 0.9}},
        ],
        "pooled": {"degenerate": False, "pr_auc": {"m": 0.7, "persistence": 0.6}},
    }
    assert worst_gap(judged, "m") == pytest.approx(-0.2)
    for day in judged["sessions"]:
        day["enough"] = False
    assert worst_gap(judged, "m") == pytest.approx(0.1), "no day to judge: the pooled gap"
