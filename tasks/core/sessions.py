"""Sessions and days: stretches of data separated by long gaps, the UTC days they start on, and
leave-one-out splits over either. Pure.

Recordings come in sessions (an evening, a night, a morning), and volatility regimes differ
between them far more than within one: on ../shared/data the Dec 5 evening is 2-3x as volatile as
the Dec 6 sessions. A model that only ever saw other sessions is what a new market looks like, so
carry-over is measured by leaving one session out at a time: train on the others (minus an
embargo around the held-out session), judge on it.

Days differ more than the sessions of one night do (another regime, and on ../shared/data
another recorder: the Nov 13-14 recordings come from the older Exchange feed, a set-up no other
day shares), so carry-over is also measured by leaving one UTC day out at a time. A day is the
day a session starts on, so a session that runs past midnight is never cut in two.

Spikes are rows (one per product-second), and neighbouring rows share their label window, so a
burst of 40 spike rows is one event: :func:`spike_episodes` counts the bursts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.core.evaluation import average_precision, bootstrap_pr_auc, is_degenerate, time_blocks
from tasks.core.timeutil import format_ts

DAY_S = 86400.0

BASELINES = ("persistence", "zscore")  # the scorers every model is judged against
SESSION_GAP_S = 1800.0  # a pause of 30 minutes without any row starts a new session
EPISODE_GAP_S = 60.0  # spike rows further apart than the label horizon are separate bursts


def session_ids(times: np.ndarray, gap_s: float = SESSION_GAP_S) -> np.ndarray:
    """A session number per row (0, 1, ... in time order): a new session starts after a
    pause longer than ``gap_s`` with no row of any product. ``times`` in any order."""
    times = np.asarray(times, dtype=float)
    if len(times) == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(times, kind="stable")
    starts = np.concatenate(([0], (np.diff(times[order]) > gap_s).astype(np.int64)))
    ids = np.empty(len(times), dtype=np.int64)
    ids[order] = np.cumsum(starts)
    return ids


def day_ids(times: np.ndarray, gap_s: float = SESSION_GAP_S) -> tuple[np.ndarray, list[str]]:
    """A day number per row (0, 1, ... in time order) and each day's name, its UTC date: the
    day its row's session starts on (sessions as :func:`session_ids`)."""
    times = np.asarray(times, dtype=float)
    sessions = session_ids(times, gap_s)
    if len(times) == 0:
        return sessions, []
    starts = np.array([times[sessions == s].min() for s in range(int(sessions.max()) + 1)])
    session_day = np.floor(starts / DAY_S).astype(np.int64)
    days, ids = np.unique(session_day[sessions], return_inverse=True)
    names = [format_ts(float(d) * DAY_S)[:10] for d in days]
    return ids.astype(np.int64), names


def spike_episodes(times: np.ndarray, y: np.ndarray, gap_s: float = EPISODE_GAP_S) -> int:
    """How many separate bursts the spike rows form (rows more than ``gap_s`` apart)."""
    spikes = np.sort(np.asarray(times, dtype=float)[np.asarray(y) == 1])
    if len(spikes) == 0:
        return 0
    return int(1 + np.sum(np.diff(spikes) > gap_s))


@dataclass(frozen=True)
class SessionFold:
    """One held-out session (or day): row positions to learn from and to judge on."""

    session: int | str  # a session's number, or a day's UTC date
    train: np.ndarray
    test: np.ndarray
    start: float  # epoch seconds of the held-out session's first and last row
    end: float

    def describe(self) -> dict:
        return {
            "session": self.session,
            "train_rows": len(self.train),
            "test_rows": len(self.test),
            "start": self.start,
            "end": self.end,
        }


def leave_one_group_out(
    times: np.ndarray,
    ids: np.ndarray,
    names: list | None = None,
    *,
    embargo_s: float = 360.0,
    min_rows: int = 600,
) -> list[SessionFold]:
    """One fold per group (``ids``: a group number per row) holding at least ``min_rows`` rows;
    fewer than two such groups: no fold (there is nothing to carry over to). ``names`` name the
    groups (default: their numbers).

    A fold trains on every row of the other groups that lies more than ``embargo_s`` away from
    the held-out group's span, on either side: no training row's feature or label window overlaps
    a judged row. Small groups are never held out, but they are trained on.
    """
    times = np.asarray(times, dtype=float)
    positions = np.arange(len(times))
    groups = [g for g in np.unique(ids) if np.sum(ids == g) >= min_rows]
    if len(groups) < 2:
        return []
    folds = []
    for group in groups:
        held = ids == group
        start, end = float(times[held].min()), float(times[held].max())
        far = (times < start - embargo_s) | (times > end + embargo_s)
        name = int(group) if names is None else names[group]
        folds.append(SessionFold(name, positions[~held & far], positions[held], start, end))
    return folds


def leave_one_session_out(
    times: np.ndarray,
    *,
    gap_s: float = SESSION_GAP_S,
    embargo_s: float = 360.0,
    min_rows: int = 600,
) -> list[SessionFold]:
    """:func:`leave_one_group_out` over the sessions (:func:`session_ids`)."""
    ids = session_ids(times, gap_s)
    return leave_one_group_out(times, ids, embargo_s=embargo_s, min_rows=min_rows)


def leave_one_day_out(
    times: np.ndarray,
    *,
    gap_s: float = SESSION_GAP_S,
    embargo_s: float = 360.0,
    min_rows: int = 120,
) -> list[SessionFold]:
    """:func:`leave_one_group_out` over the UTC days (:func:`day_ids`), each named by its date."""
    ids, names = day_ids(times, gap_s)
    return leave_one_group_out(times, ids, names, embargo_s=embargo_s, min_rows=min_rows)


# ------------------------------------------------------------------------------- judging


@dataclass
class SessionPart:
    """Scored rows of one session (or day): labels, times (epoch s) and every scorer's scores."""

    session: int | str
    y: np.ndarray
    times: np.ndarray
    scores: dict[str, np.ndarray]
    tau: float | None = None  # the label threshold these rows were judged with


def _figures(
    y: np.ndarray,
    times: np.ndarray,
    scores: dict[str, np.ndarray],
    strata: np.ndarray,
    references: tuple[str, ...],
    block_s: float,
    n_boot: int,
    seed: int,
) -> dict:
    positives = int(np.sum(y))
    out = {
        "rows": len(y),
        "positives": positives,
        "positive_rate": positives / len(y) if len(y) else None,
        "episodes": spike_episodes(times, y),
        "degenerate": is_degenerate(y),
        "pr_auc": {name: average_precision(y, s) for name, s in scores.items()},
    }
    if n_boot and not out["degenerate"]:
        blocks = time_blocks(times, strata, block_s)
        boot = bootstrap_pr_auc(
            y, scores, blocks, strata, references=references, n_boot=n_boot, seed=seed
        )
        for key, intervals in boot.items():
            out["interval" if key == "pr_auc" else key] = {
                k: v.to_list() for k, v in intervals.items()
            }
    return out


def judge_sessions(
    parts: list[SessionPart],
    *,
    references: tuple[str, ...] = BASELINES,
    min_spikes: int = 20,
    min_episodes: int = 3,
    block_s: float = 300.0,
    n_boot: int = 200,
    seed: int = 0,
) -> dict:
    """PR-AUC of every scorer within each session and pooled over all of them, on the same rows,
    with block-bootstrap intervals (and of each scorer's gap to each of ``references``).

    A session has ``enough`` spikes to judge a ranking inside it when it holds at least
    ``min_spikes`` spike rows in at least ``min_episodes`` separate bursts (one burst is one event,
    however many seconds it lasts).
    """
    sessions = []
    for i, part in enumerate(parts):
        figures = _figures(
            part.y,
            part.times,
            part.scores,
            np.zeros(len(part.y), dtype=np.int64),
            references,
            block_s,
            n_boot,
            seed + i,
        )
        figures["session"] = part.session
        figures["tau"] = part.tau
        figures["start"] = format_ts(float(part.times.min())) if len(part.times) else None
        figures["end"] = format_ts(float(part.times.max())) if len(part.times) else None
        figures["enough"] = bool(
            figures["positives"] >= min_spikes and figures["episodes"] >= min_episodes
        )
        sessions.append(figures)
    pooled = None
    if parts:
        names = list(parts[0].scores)
        pooled = _figures(
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.times for p in parts]),
            {n: np.concatenate([p.scores[n] for p in parts]) for n in names},
            np.concatenate([np.full(len(p.y), i) for i, p in enumerate(parts)]),
            references,
            block_s,
            n_boot,
            seed,
        )
    return {
        "sessions": sessions,
        "pooled": pooled,
        "references": list(references),
        "min_spikes": min_spikes,
        "min_episodes": min_episodes,
    }


def judge_by_session(
    times: np.ndarray, y: np.ndarray, scores: dict[str, np.ndarray], gap_s: float = SESSION_GAP_S
) -> dict:
    """:func:`judge_sessions` of scored rows (one model, one label) cut into their sessions."""
    ids = session_ids(times, gap_s)
    parts = [
        SessionPart(
            int(s), y[ids == s], times[ids == s], {k: v[ids == s] for k, v in scores.items()}
        )
        for s in np.unique(ids)
    ]
    return judge_sessions(parts)


def shortfalls(judged: dict, scorer: str, references: tuple[str, ...] = BASELINES) -> list[dict]:
    """Where ``scorer`` ranks below any of ``references`` (the baselines): pooled, and in each
    session with enough spikes. Empty when it never does."""
    out = []
    places = [("pooled", judged.get("pooled"))]
    places += [(f"session {f['session']}", f) for f in judged["sessions"] if f["enough"]]
    for where, figures in places:
        if not figures or figures["degenerate"]:
            continue
        for reference in references:
            gap = figures["pr_auc"][scorer] - figures["pr_auc"][reference]
            if gap < 0:
                out.append({"where": where, "below": reference, "gap": gap})
    return out


def judged_places(judged: dict) -> list[dict]:
    """The figures a ranking is judged on: every held-out group with enough spikes, or the pooled
    figures when none has enough."""
    places = [f for f in judged["sessions"] if f["enough"] and not f["degenerate"]]
    pooled = judged.get("pooled")
    if not places and pooled and not pooled["degenerate"]:
        places = [pooled]
    return places


def worst_gap(judged: dict, scorer: str, reference: str = "persistence") -> float | None:
    """``scorer``'s PR-AUC minus ``reference``'s where it is furthest behind (or least ahead)
    among :func:`judged_places`; None with nothing to judge."""
    gaps = [f["pr_auc"][scorer] - f["pr_auc"][reference] for f in judged_places(judged)]
    return min(gaps) if gaps else None
