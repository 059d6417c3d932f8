"""When the monitor retrains: consecutive checks of one model, reset by a retraining."""

from __future__ import annotations

from monitoring.policy import RetrainPolicy, decide

POLICY = RetrainPolicy(drift_share_limit=0.5, checks=2, min_positives=20)


def check(share: float, version: str = "3", live: dict | None = None, retrained: bool = False):
    return {
        "model": {"version": version},
        "drift": {"share": share},
        "live": live,
        "retrain": {"triggered": retrained, "why": ""},
    }


def run(shares_and_more: list[dict]) -> list[bool]:
    """Decide check after check, recording a retraining when one is due."""
    history, due = [], []
    for entry in shares_and_more:
        decision = decide(history, entry, POLICY)
        entry["retrain"] = {"triggered": decision.due, "why": decision.why}
        history.append(entry)
        due.append(decision.due)
    return due


def test_one_drifted_check_is_not_enough_two_in_a_row_are():
    assert run([check(0.8)]) == [False]
    assert run([check(0.8), check(0.9)]) == [False, True]
    assert run([check(0.8), check(0.2), check(0.9)]) == [False, False, False]
    assert run([check(0.5), check(0.5)]) == [False, False]  # over the limit, not at it


def test_a_lasting_drift_starts_one_retraining_not_one_per_check():
    assert run([check(0.8) for _ in range(5)]) == [False, True, False, True, False]


def test_checks_of_another_model_do_not_count():
    assert run([check(0.8, "3"), check(0.8, "4")]) == [False, False]
    assert run([check(0.8, "3"), check(0.8, "4"), check(0.8, "4")]) == [False, False, True]


def test_the_reason_names_the_rule_and_the_figures():
    history = [check(0.7)]
    decision = decide(history, check(0.9), POLICY)
    assert decision.due
    assert decision.why == "drift share over 0.5 for 2 consecutive checks (0.70, 0.90)"
    quiet = decide([], check(0.1), POLICY)
    assert not quiet.due and quiet.why.startswith("drift share 0.10 (limit 0.5; 0 of 2")


def live(model: float, persistence: float, positives: int = 40) -> dict:
    return {"1h": {"pr_auc": model, "persistence_pr_auc": persistence, "positives": positives}}


def test_the_champion_below_persistence_twice_retrains():
    below = [check(0.1, live=live(0.2, 0.3)), check(0.1, live=live(0.25, 0.3))]
    assert run(below) == [False, True]
    history = [below[0]]
    history[0]["retrain"] = {"triggered": False}
    assert (
        decide(history, check(0.1, live=live(0.25, 0.3)), POLICY).why
    ) == "live PR-AUC below persistence for 2 consecutive checks (1h: 0.250 < 0.300)"


def test_a_bad_quarter_of_an_hour_is_not_a_bad_champion():
    noisy = {"15m": live(0.1, 0.3)["1h"], "1h": live(0.4, 0.3)["1h"]}
    assert run([check(0.1, live=noisy) for _ in range(3)]) == [False] * 3
    assert run([check(0.1, live={"24h": live(0.2, 0.3)["1h"]}) for _ in range(2)]) == [False, True]


def test_few_spikes_or_no_pr_auc_say_nothing_about_the_champion():
    assert run([check(0.1, live=live(0.2, 0.3, positives=5)) for _ in range(3)]) == [False] * 3
    no_spike = {"1h": {"pr_auc": None, "persistence_pr_auc": None, "positives": 0}}
    assert run([check(0.1, live=no_spike) for _ in range(3)]) == [False] * 3
    assert run([check(0.1, live=live(0.4, 0.3)) for _ in range(3)]) == [False] * 3


def test_the_champion_below_persistence_for_the_configured_checks_falls_back():
    policy = RetrainPolicy(checks=2, min_positives=20, fallback_checks=3)
    history, decisions = [], []
    for _ in range(3):
        entry = check(0.1, live=live(0.2, 0.3))
        decision = decide(history, entry, policy)
        decisions.append(decision.fallback)
        history.append({**entry, "retrain": {"triggered": False}})
    assert decisions == [False, False, True]
    assert decision.due and decision.fallback_why == (
        "live PR-AUC below persistence for 3 consecutive checks (1h: 0.200 < 0.300)"
    )


def test_no_fall_back_from_a_fallback_nor_on_the_24h_window_alone():
    policy = RetrainPolicy(fallback_checks=2)
    judged_fallback = {
        **check(0.1, live=live(0.2, 0.3)),
        "model": {"version": "9", "fallback": True},
    }
    history = [{**judged_fallback, "retrain": {"triggered": False}}]
    assert not decide(history, judged_fallback, policy).fallback
    only_24h = check(0.1, live={"24h": live(0.2, 0.3)["1h"]})
    history = [{**only_24h, "retrain": {"triggered": False}}]
    decision = decide(history, only_24h, policy)
    assert decision.due and not decision.fallback


def tau_flat(span_s: float, why: str = "every matured label is a spike: tau is below ...") -> dict:
    return {
        "1h": {
            "pr_auc": None,
            "positives": 500,
            "rows": 500,
            "span_s": span_s,
            "tau_degenerate": why,
        }
    }


def test_tau_separating_nothing_for_an_hour_counts_towards_a_retrain():
    assert run([check(0.1, live=tau_flat(3500.0)) for _ in range(2)]) == [False, True]
    history = [{**check(0.1, live=tau_flat(3500.0)), "retrain": {"triggered": False}}]
    why = decide(history, check(0.1, live=tau_flat(3500.0)), POLICY).why
    assert why.startswith("the label's tau separated nothing for 2 consecutive checks (1h: every")
    # ten minutes of one kind of label is a quiet stretch, not a tau gone stale
    assert run([check(0.1, live=tau_flat(600.0)) for _ in range(3)]) == [False] * 3
