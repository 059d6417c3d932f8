"""When the monitor retrains, and when it falls back to persistence. Pure: the check history
in, a decision with its reasons out.

Retraining starts when, over the checks of the same model version since the last retraining,

- the drift share stayed over the limit for ``checks`` consecutive checks (this one included), or
- the live PR-AUC of the champion stayed below persistence's, on the same rows of the 1 h or the
  24 h window with at least ``min_positives`` spikes, for ``checks`` consecutive checks, or
- the label's tau separated nothing (every matured label of the 1 h window a spike, or none,
  over at least ``tau_window_s`` of event time) for ``checks`` consecutive checks.

The monitor falls back to persistence (serves a registered persistence version as champion, and
retrains) when the champion's live PR-AUC stayed below persistence's on the 1 h window with at
least ``min_positives`` spikes for ``fallback_checks`` consecutive checks, unless the judged
champion is already a fallback.

The 15 min window is left to the dashboards: on the real recordings the champion ranks below
persistence in about a third of the 15-minute stretches (a handful of spikes each), so it would
retrain all the time.

A single bad check never retrains (one noisy window, one replay of an odd hour); starting a
retraining resets the count, so a lasting drift starts one run, not one per check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LIVE_WINDOWS = ("1h", "24h")  # the alert LivePrAucBelowPersistence watches the same windows
FALLBACK_WINDOWS = ("1h",)
TAU_WINDOW = "1h"


@dataclass(frozen=True)
class RetrainPolicy:
    drift_share_limit: float = 0.5
    checks: int = 2
    min_positives: int = 20
    fallback_checks: int = 2
    tau_window_s: float = 2700.0  # a window of all spikes (or none) must span this much event time

    @classmethod
    def of(cls, settings) -> RetrainPolicy:
        return cls(
            settings.drift_share_limit,
            settings.drift_checks_to_retrain,
            settings.live_min_positives,
            settings.fallback_checks,
        )


@dataclass(frozen=True)
class Decision:
    due: bool
    why: str
    fallback: bool = False
    fallback_why: str | None = None


def _version(entry: dict) -> str | None:
    return (entry.get("model") or {}).get("version")


def _is_fallback(entry: dict) -> bool:
    return bool((entry.get("model") or {}).get("fallback"))


def _live_below_persistence(
    entry: dict, min_positives: int, windows: tuple[str, ...] = LIVE_WINDOWS
) -> str | None:
    """The first window where the model ranked below persistence with enough spikes."""
    live = entry.get("live") or {}
    for window in windows:
        figures = live.get(window) or {}
        model, persistence = figures.get("pr_auc"), figures.get("persistence_pr_auc")
        if (
            model is not None
            and persistence is not None
            and figures.get("positives", 0) >= min_positives
            and model < persistence
        ):
            return f"{window}: {model:.3f} < {persistence:.3f}"
    return None


def tau_degenerate(entry: dict, min_span_s: float) -> str | None:
    """Why tau separates nothing in the 1 h window (over at least ``min_span_s``), or None."""
    figures = (entry.get("live") or {}).get(TAU_WINDOW) or {}
    why = figures.get("tau_degenerate")
    if why and figures.get("span_s", 0.0) >= min_span_s:
        return f"{TAU_WINDOW}: {why} ({figures.get('rows', 0)} rows)"
    return None


def _streak(checks: Sequence[dict], bad) -> list[dict]:
    streak: list[dict] = []
    for entry in reversed(checks):
        if not bad(entry):
            break
        streak.append(entry)
    return streak[::-1]


def decide(history: Sequence[dict], entry: dict, policy: RetrainPolicy) -> Decision:
    """Whether ``entry`` (this check) makes retraining due, given the earlier ``history``."""
    since: list[dict] = []
    for earlier in history:
        if (earlier.get("retrain") or {}).get("triggered"):
            since = []
        elif _version(earlier) == _version(entry):
            since.append(earlier)
        else:
            since = []  # another model was judged: its checks say nothing of this one
    checks = [*since, entry]
    limit = policy.drift_share_limit
    drifted = _streak(checks, lambda e: e["drift"]["share"] > limit)
    if len(drifted) >= policy.checks:
        shares = ", ".join(f"{e['drift']['share']:.2f}" for e in drifted)
        return Decision(
            True,
            f"drift share over {limit:g} for {len(drifted)} consecutive checks ({shares})",
        )
    below_1h = _streak(
        checks, lambda e: _live_below_persistence(e, policy.min_positives, FALLBACK_WINDOWS)
    )
    if len(below_1h) >= policy.fallback_checks and not _is_fallback(entry):
        why = (
            f"live PR-AUC below persistence for {len(below_1h)} consecutive checks "
            f"({_live_below_persistence(entry, policy.min_positives, FALLBACK_WINDOWS)})"
        )
        return Decision(True, why, fallback=True, fallback_why=why)
    below = _streak(checks, lambda e: _live_below_persistence(e, policy.min_positives))
    if len(below) >= policy.checks:
        return Decision(
            True,
            f"live PR-AUC below persistence for {len(below)} consecutive checks "
            f"({_live_below_persistence(entry, policy.min_positives)})",
        )
    flat = _streak(checks, lambda e: tau_degenerate(e, policy.tau_window_s))
    if len(flat) >= policy.checks:
        return Decision(
            True,
            f"the label's tau separated nothing for {len(flat)} consecutive checks "
            f"({tau_degenerate(entry, policy.tau_window_s)})",
        )
    share = entry["drift"]["share"]
    return Decision(
        False,
        f"drift share {share:.2f} (limit {limit:g}; {len(drifted)} of {policy.checks} checks "
        f"over), live PR-AUC below persistence in {len(below)} of {policy.checks} checks, "
        f"tau separating nothing in {len(flat)} of {policy.checks} checks",
    )
