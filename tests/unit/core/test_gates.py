"""Validation gates: each gate can refuse; a shuffled-label challenger is refused."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core.gates import (
    GateConfig,
    GateFigures,
    SessionFigures,
    decide,
    markdown_report,
    session_figures,
)


def _figures(**changes) -> GateFigures:
    base = dict(
        rows=3000,
        positives=300,
        challenger_pr_auc=0.30,
        zscore_pr_auc=0.15,
        persistence_pr_auc=0.25,
        champion_pr_auc=0.29,
        challenger_ece=0.03,
        challenger_mean_prob=0.11,
        positive_rate=0.10,
        latency_p95_ms=3.0,
    )
    base.update(changes)
    return GateFigures(**base)


def test_gates_pass_a_good_challenger():
    decision = decide(_figures())
    assert decision.passed and decision.decision == "pass"
    assert "PASS" in markdown_report(decision)


def test_gates_refuse_a_shuffled_label_challenger():
    # a model trained on shuffled labels ranks at random: PR-AUC near the spike rate
    decision = decide(_figures(challenger_pr_auc=0.10, challenger_ece=0.02))
    assert not decision.passed
    assert {c.name for c in decision.failed} == {"vs_champion", "vs_baselines"}
    assert "vs_baselines" in decision.reason()


@pytest.mark.parametrize(
    ("changes", "gate"),
    [
        ({"champion_pr_auc": 0.40}, "vs_champion"),
        ({"persistence_pr_auc": 0.31}, "vs_baselines"),
        ({"challenger_ece": 0.2}, "calibration"),
        ({"challenger_mean_prob": 0.5}, "calibration"),
        ({"latency_p95_ms": 500.0}, "latency"),
        ({"positives": 3}, "enough_data"),
        ({"contracts_passed": False, "contract_failures": ("ts increasing",)}, "data_contracts"),
        ({"challenger_pr_auc": None, "positives": 0}, "vs_baselines"),
    ],
)
def test_each_gate_can_refuse(changes, gate):
    decision = decide(_figures(**changes))
    assert not decision.passed
    assert gate in {c.name for c in decision.failed}


def test_no_champion_is_judged_against_baselines_only():
    decision = decide(_figures(champion_pr_auc=None))
    assert decision.passed
    assert decide(_figures(champion_pr_auc=None, challenger_pr_auc=0.2)).passed is False


def test_margin_lets_a_slightly_weaker_challenger_through():
    assert decide(_figures(champion_pr_auc=0.31), GateConfig(margin=0.02)).passed
    assert not decide(_figures(champion_pr_auc=0.31), GateConfig(margin=0.0)).passed


def _session(session: int, challenger: float, persistence: float, **changes) -> SessionFigures:
    base = dict(
        session=session,
        rows=1500,
        positives=150,
        episodes=8,
        challenger_pr_auc=challenger,
        persistence_pr_auc=persistence,
        zscore_pr_auc=0.10,
    )
    base.update(changes)
    return SessionFigures(**base)


def test_a_challenger_below_persistence_inside_a_session_is_refused():
    """Better than persistence over the whole window (it tells the regimes apart), worse inside
    the calm session: refused."""
    sessions = (_session(0, 0.60, 0.50), _session(1, 0.08, 0.12))
    decision = decide(_figures(sessions=sessions))
    assert not decision.passed
    assert [c.name for c in decision.failed] == ["within_sessions"]
    assert "session 1" in decision.reason()
    assert "| 1 | 1500 | 150 | 8 |" in markdown_report(decision)
    assert decide(_figures(sessions=sessions), GateConfig(session_margin=0.05)).passed


def test_a_session_with_too_few_spikes_or_bursts_is_not_judged_inside():
    few = (_session(0, 0.60, 0.50), _session(1, 0.01, 0.12, positives=12))
    one_burst = (_session(0, 0.60, 0.50), _session(1, 0.01, 0.12, episodes=1))
    assert decide(_figures(sessions=few)).passed
    assert decide(_figures(sessions=one_burst)).passed
    check = next(c for c in decide(_figures(sessions=())).checks if c.name == "within_sessions")
    assert check.passed and "nothing to judge" in check.detail


def test_a_degraded_challenger_and_one_below_persistence_are_both_refused():
    degraded = decide(_figures(challenger_pr_auc=0.11, challenger_ece=0.02))
    below = decide(_figures(challenger_pr_auc=0.24, champion_pr_auc=None))
    assert not degraded.passed and not below.passed
    assert "vs_baselines" in {c.name for c in degraded.failed}
    assert {c.name for c in below.failed} == {"vs_baselines"}


def test_session_figures_cut_the_window_at_long_gaps():
    times = np.concatenate([np.arange(3000.0), np.arange(3000.0) + 10_000]) + 1.76e9
    y = np.zeros(6000)
    y[[100, 400, 900, 3100, 3500, 5000]] = 1
    scores = {"challenger": y, "persistence": 1 - y, "zscore": np.zeros(6000)}
    figures = session_figures(times, y, scores)
    assert [(f.session, f.rows, f.positives, f.episodes) for f in figures] == [
        (0, 3000, 3, 3),
        (1, 3000, 3, 3),
    ]
    assert figures[0].challenger_pr_auc == 1.0 and figures[0].persistence_pr_auc < 0.01
