"""Validation gates: may a challenger replace the champion? Pure: figures in, decision out.

The figures come from scoring challenger, champion and both baselines on the same most recent
window that none of them was trained on (``tasks.stages.validate`` measures them). The gates:

- ``enough_data``: the window has at least ``min_rows`` rows and ``min_positives`` spikes, else no
  PR-AUC can be trusted and the challenger is refused;
- ``data_contracts``: the window passes the data contracts (when they were checked);
- ``vs_champion``: challenger PR-AUC not below the champion's by more than ``margin`` (passes
  when there is no champion yet);
- ``vs_baselines``: challenger PR-AUC above the stronger of the z-score and persistence
  baselines by more than ``baseline_gain`` (pooled over the whole window);
- ``within_sessions``: inside each session of the window (stretches separated by long gaps)
  with enough spikes (``min_session_spikes`` spike rows in ``min_session_episodes`` separate
  bursts), challenger PR-AUC not below either baseline's by more than ``session_margin``: a
  model must rank inside a regime, not only tell regimes apart;
- ``calibration``: expected calibration error at most ``max_ece``, and the mean predicted
  probability within a factor ``max_rate_ratio`` of the observed spike rate;
- ``latency``: p95 single-row ``predict_array`` time within ``latency_budget_ms``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tasks.core.evaluation import average_precision
from tasks.core.scoring import format_metric as fmt
from tasks.core.sessions import SESSION_GAP_S, session_ids, spike_episodes


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.02
    baseline_gain: float = 0.0
    max_ece: float = 0.1
    max_rate_ratio: float = 3.0
    latency_budget_ms: float = 50.0
    min_rows: int = 300
    min_positives: int = 10
    session_margin: float = 0.0
    min_session_spikes: int = 20
    min_session_episodes: int = 3


@dataclass(frozen=True)
class SessionFigures:
    """One session of the validation window: its spikes and the PR-AUC of each scorer."""

    session: int
    rows: int
    positives: int
    episodes: int
    challenger_pr_auc: float | None
    persistence_pr_auc: float | None
    zscore_pr_auc: float | None


def session_figures(
    times: np.ndarray,
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    gap_s: float = SESSION_GAP_S,
) -> tuple[SessionFigures, ...]:
    """The window cut into sessions, each with its spikes and the scorers' PR-AUC
    (``scores``: ``challenger``, ``persistence``, ``zscore`` on the window's rows)."""
    ids = session_ids(times, gap_s)
    out = []
    for session in np.unique(ids):
        rows = ids == session
        pr = {k: average_precision(y[rows], v[rows]) for k, v in scores.items()}
        out.append(
            SessionFigures(
                session=int(session),
                rows=int(rows.sum()),
                positives=int(y[rows].sum()),
                episodes=spike_episodes(times[rows], y[rows]),
                challenger_pr_auc=pr.get("challenger"),
                persistence_pr_auc=pr.get("persistence"),
                zscore_pr_auc=pr.get("zscore"),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class GateFigures:
    """What was measured on the validation window (``None`` where it does not exist)."""

    rows: int
    positives: int
    challenger_pr_auc: float | None
    zscore_pr_auc: float | None
    persistence_pr_auc: float | None
    champion_pr_auc: float | None = None
    challenger_ece: float | None = None
    challenger_mean_prob: float | None = None
    positive_rate: float | None = None
    latency_p95_ms: float | None = None
    contracts_passed: bool | None = None
    contract_failures: tuple[str, ...] = ()
    sessions: tuple[SessionFigures, ...] = ()


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[GateCheck, ...]
    figures: GateFigures
    config: GateConfig = field(default_factory=GateConfig)

    @property
    def decision(self) -> str:
        return "pass" if self.passed else "fail"

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def reason(self) -> str:
        if self.passed:
            return "all gates passed"
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reason": self.reason(),
            "checks": [asdict(c) for c in self.checks],
            "figures": asdict(self.figures),
            "config": asdict(self.config),
        }


def decide(figures: GateFigures, config: GateConfig | None = None) -> GateDecision:
    """Every gate evaluated (none short-circuits), so the report shows all reasons at once."""
    config = config or GateConfig()
    f = figures
    checks = []

    enough = f.rows >= config.min_rows and f.positives >= config.min_positives
    checks.append(
        GateCheck(
            "enough_data",
            enough,
            f"{f.rows} rows, {f.positives} spikes (need {config.min_rows}, {config.min_positives})",
        )
    )

    if f.contracts_passed is None:
        checks.append(GateCheck("data_contracts", True, "not checked"))
    else:
        detail = "passed" if f.contracts_passed else "failed: " + ", ".join(f.contract_failures)
        checks.append(GateCheck("data_contracts", f.contracts_passed, detail))

    challenger = f.challenger_pr_auc
    if f.champion_pr_auc is None:
        checks.append(GateCheck("vs_champion", challenger is not None, "no champion to compare"))
    else:
        ok = challenger is not None and challenger >= f.champion_pr_auc - config.margin
        checks.append(
            GateCheck(
                "vs_champion",
                ok,
                f"challenger PR-AUC {fmt(challenger)} vs champion {fmt(f.champion_pr_auc)} "
                f"(margin {config.margin})",
            )
        )

    baselines = [b for b in (f.zscore_pr_auc, f.persistence_pr_auc) if b is not None]
    best = max(baselines) if baselines else None
    ok = challenger is not None and best is not None and challenger > best + config.baseline_gain
    checks.append(
        GateCheck(
            "vs_baselines",
            ok,
            f"challenger PR-AUC {fmt(challenger)} vs z-score {fmt(f.zscore_pr_auc)}, "
            f"persistence {fmt(f.persistence_pr_auc)}",
        )
    )

    checks.append(_within_sessions(f, config))

    ratio = None
    if f.challenger_mean_prob is not None and f.positive_rate:
        ratio = f.challenger_mean_prob / f.positive_rate
    calibrated = (
        f.challenger_ece is not None
        and f.challenger_ece <= config.max_ece
        and ratio is not None
        and 1 / config.max_rate_ratio <= ratio <= config.max_rate_ratio
    )
    checks.append(
        GateCheck(
            "calibration",
            calibrated,
            f"ECE {fmt(f.challenger_ece)} (max {config.max_ece}); mean probability / spike rate "
            f"{fmt(ratio)} (within x{config.max_rate_ratio})",
        )
    )

    fast = f.latency_p95_ms is not None and f.latency_p95_ms <= config.latency_budget_ms
    checks.append(
        GateCheck(
            "latency",
            fast,
            f"p95 {fmt(f.latency_p95_ms)} ms per row (budget {config.latency_budget_ms} ms)",
        )
    )
    return GateDecision(all(c.passed for c in checks), tuple(checks), figures, config)


def _within_sessions(f: GateFigures, config: GateConfig) -> GateCheck:
    judged = [
        s
        for s in f.sessions
        if s.positives >= config.min_session_spikes and s.episodes >= config.min_session_episodes
    ]
    if not judged:
        return GateCheck(
            "within_sessions",
            True,
            f"no session with {config.min_session_spikes} spikes in "
            f"{config.min_session_episodes} bursts: nothing to judge inside a regime",
        )
    below = []
    for s in judged:
        bars = [b for b in (s.persistence_pr_auc, s.zscore_pr_auc) if b is not None]
        bar = max(bars) if bars else None
        if s.challenger_pr_auc is None or (
            bar is not None and s.challenger_pr_auc < bar - config.session_margin
        ):
            below.append(
                f"session {s.session}: {fmt(s.challenger_pr_auc)} vs persistence "
                f"{fmt(s.persistence_pr_auc)}, z-score {fmt(s.zscore_pr_auc)}"
            )
    detail = "; ".join(below) if below else f"not below a baseline in {len(judged)} session(s)"
    return GateCheck("within_sessions", not below, detail)


def markdown_report(decision: GateDecision, title: str = "Validation") -> str:
    """A short human report of the decision and its figures."""
    lines = [
        f"# {title}: {decision.decision.upper()}",
        "",
        decision.reason(),
        "",
        "| gate | ok | detail |",
    ]
    lines.append("| --- | --- | --- |")
    for check in decision.checks:
        lines.append(f"| {check.name} | {'yes' if check.passed else 'NO'} | {check.detail} |")
    lines += ["", "| figure | value |", "| --- | --- |"]
    for name, value in asdict(decision.figures).items():
        if name == "sessions":
            continue
        shown = fmt(value) if isinstance(value, float) else value
        lines.append(f"| {name} | {shown} |")
    if decision.figures.sessions:
        lines += [
            "",
            "| session | rows | spikes | bursts | challenger | persistence | z-score |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in decision.figures.sessions:
            scores = (s.challenger_pr_auc, s.persistence_pr_auc, s.zscore_pr_auc)
            lines.append(
                f"| {s.session} | {s.rows} | {s.positives} | {s.episodes} | "
                + " | ".join(fmt(v) for v in scores)
                + " |"
            )
    return "\n".join(lines) + "\n"
