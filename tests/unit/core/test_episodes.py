"""Spike episodes: one per run of flagged predictions per product, closed after the quiet time,
matured into a hit or a false alarm once the horizon has passed."""

from __future__ import annotations

import math

import pytest

from tasks.core.episodes import EpisodeTracker, Observation, episodes_of

TAU = 0.002


def obs(ts, score, product="BTC-USD", volatility=0.001, persistence=0.001, tau=TAU):
    return Observation(product, ts, score, 0.5, volatility, persistence, tau, "3", "ml")


def kinds(events):
    return [(e.kind, e.episode.product_id) for e in events]


def test_a_burst_of_flagged_seconds_is_one_episode_that_closes_after_the_quiet_time():
    tracker = EpisodeTracker(quiet_s=30)
    events = []
    for t in range(0, 20):
        events += tracker.observe(obs(t, 0.9 if t % 3 else 0.2))  # flagged with short gaps
    assert kinds(events) == [("opened", "BTC-USD")]
    opened = events[0].episode
    assert (opened.opened_at, opened.score) == (1, 0.9)
    assert tracker.observe(obs(48, 0.1)) == []  # 29 s after the last flagged second (19)
    closing = tracker.observe(obs(49, 0.1))
    assert kinds(closing) == [("closed", "BTC-USD")]
    closed = closing[0].episode
    assert (closed.closed_at, closed.last_flagged_at, closed.flagged) == (49, 19, 13)
    assert closed.episode_id == opened.episode_id


def test_products_have_episodes_of_their_own_and_a_later_burst_is_a_new_episode():
    tracker = EpisodeTracker(quiet_s=10)
    events = tracker.observe(obs(0, 0.9)) + tracker.observe(obs(1, 0.9, product="ETH-USD"))
    events += tracker.observe(obs(5, 0.9))  # BTC still open
    events += tracker.observe(obs(30, 0.9))  # BTC quiet for long enough: closed, and reopens
    events += tracker.observe(obs(31, 0.1, product="ETH-USD"))  # ETH's own clock closes it
    assert kinds(events) == [
        ("opened", "BTC-USD"),
        ("opened", "ETH-USD"),
        ("closed", "BTC-USD"),
        ("opened", "BTC-USD"),
        ("closed", "ETH-USD"),
    ]


def test_an_episode_is_a_hit_when_realized_volatility_reaches_tau_within_the_horizon():
    tracker = EpisodeTracker(quiet_s=10, horizon_s=60)
    events = tracker.observe(obs(0, 0.9))
    events += tracker.observe(obs(50, 0.1))  # closes at 10
    events += tracker.observe(obs(59, 0.1, volatility=TAU * 1.5))  # within 60 s of the flag
    events += tracker.observe(obs(60, 0.1))
    matured = [e.episode for e in events if e.kind == "matured"]
    assert [(m.outcome, m.peak_realized) for m in matured] == [("hit", TAU * 1.5)]


def test_volatility_after_the_horizon_does_not_make_a_hit():
    tracker = EpisodeTracker(quiet_s=10, horizon_s=60)
    events = tracker.observe(obs(0, 0.9))
    events += tracker.observe(obs(30, 0.1, volatility=TAU / 2))
    events += tracker.observe(obs(61, 0.1, volatility=TAU * 3))  # too late: matured before it
    matured = [e.episode for e in events if e.kind == "matured"]
    assert [(m.outcome, m.peak_realized) for m in matured] == [("false_alarm", TAU / 2)]


def test_persistence_flags_at_its_own_threshold_tau():
    rows = [obs(t, 0.0, persistence=TAU * (2 if 10 <= t < 15 else 0.5)) for t in range(100)]
    model = episodes_of(rows, quiet_s=20)
    persistence = episodes_of(rows, quiet_s=20, scorer="persistence")
    assert model == []  # the model never reached its threshold
    assert [(e.opened_at, e.last_flagged_at, e.threshold) for e in persistence] == [(10, 14, TAU)]


def test_without_a_realized_volatility_in_the_horizon_an_episode_has_no_outcome():
    tracker = EpisodeTracker(quiet_s=10, horizon_s=60)
    events = tracker.observe(obs(0, 0.9)) + tracker.observe(obs(100, 0.1, volatility=None))
    assert [(e.kind, e.episode.outcome) for e in events] == [
        ("opened", None),
        ("closed", None),
        ("matured", None),
    ]


def test_without_tau_an_episode_has_no_outcome():
    rows = [obs(t, 0.9 if t == 0 else 0.1, tau=None) for t in range(0, 200, 5)]
    (episode,) = episodes_of(rows, quiet_s=20)
    assert episode.closed_at == 20 and episode.outcome is None


def test_replaying_the_same_stream_gives_the_same_episodes():
    rows = [
        obs(t, 0.5 + 0.5 * math.sin(t / 7.0), volatility=0.001 * (1 + t % 5)) for t in range(300)
    ]
    first, second = episodes_of(rows, quiet_s=15), episodes_of(list(reversed(rows)), quiet_s=15)
    assert first == second and len(first) > 3


def test_stream_time_never_goes_back():
    tracker = EpisodeTracker(quiet_s=10)
    tracker.observe(obs(100, 0.9))
    tracker.advance("BTC-USD", 50)
    assert tracker.clocks == {"BTC-USD": 100}


def test_a_product_consumed_ahead_of_another_does_not_close_its_episodes():
    """Products come from different partitions: the scorer may see all of BTC-USD's records
    before ETH-USD's. ETH-USD's burst is still one episode."""
    tracker = EpisodeTracker(quiet_s=10)
    events = []
    for t in range(0, 300):
        events += tracker.observe(obs(t, 0.1))  # BTC-USD, consumed first, to t = 299
    for t in range(0, 20):
        events += tracker.observe(obs(t, 0.9, product="ETH-USD"))  # a 20 s burst
    assert kinds(events) == [("opened", "ETH-USD")]
    assert tracker.open["ETH-USD"].flagged == 20


def test_the_quiet_time_must_be_positive():
    with pytest.raises(ValueError, match="quiet_s"):
        EpisodeTracker(quiet_s=0)
