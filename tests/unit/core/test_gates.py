"""Validation gates: each gate can refuse; a shuffled-label challenger is refused."""

from __future__ import annotations

import pytest

from tasks.core.gates import GateConfig, GateFigures, decide, markdown_report


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
