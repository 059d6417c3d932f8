"""Spike episodes: a run of spike predictions for one product, told once. Pure.

An episode opens at the first prediction at or above the threshold for a product and closes
once no prediction of that product reached the threshold for ``quiet_s`` seconds of its stream
time (so a burst of flagged seconds is one alert, not one per second). Stream time is the event
time of the product's predictions, each product on its own clock: products come from different
partitions, and one may be consumed minutes ahead of another. So a replay gives the same episodes
as the live feed it recorded, however the partitions interleave.

Once closed, an episode matures when the stream is ``horizon_s`` past its last flagged
prediction; it is then a **hit** when the market's realized volatility reached tau within the
horizon of one of its predictions, else a **false alarm**. The realized volatility comes from the
stream itself: ``realized_vol_1s_60`` at time T, the 1-second mid-price volatility over
(T - 60 s, T], is the forward volatility (the label's quantity) of a prediction made at T - 60 s.

The same tracker runs for persistence at its own threshold (a spike flagged when the current
60 s volatility is already at tau), so both are judged by the same rule on the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from tasks.core.labels import HORIZON_S
from tasks.core.models import PERSISTENCE_COLUMN
from tasks.core.timeutil import parse_ts

VOLATILITY_COLUMN = "realized_vol_1s_60"  # the label's 1-second grid over the last 60 s

EventKind = Literal["opened", "closed", "matured"]
Outcome = Literal["hit", "false_alarm"]


@dataclass(frozen=True)
class Observation:
    """One scored feature record, as the episode trackers need it."""

    product_id: str
    ts: float  # event time, epoch seconds
    score: float
    threshold: float
    volatility: float | None  # realized_vol_1s_60: the last 60 s, on the label's 1-second grid
    persistence: float | None  # realized_vol_60: what persistence scores
    tau: float | None  # the model's label threshold (absolute label); None: outcomes unknown
    model_version: str = ""
    model_variant: str = ""


def observation_of(
    prediction: dict, features: dict, label: dict, ts: float | None = None
) -> Observation:
    """The observation of a ``ticks.predictions`` record, with its feature record's values and
    the served model's label spec (tau: absolute label only); ``ts``: its event time, when the
    caller has parsed it already."""
    tau = label.get("tau") if label.get("mode", "absolute") == "absolute" else None
    return Observation(
        product_id=prediction["product_id"],
        ts=parse_ts(prediction["ts"]) if ts is None else ts,
        score=prediction["score"],
        threshold=prediction["threshold"],
        volatility=features.get(VOLATILITY_COLUMN),
        persistence=features.get(PERSISTENCE_COLUMN),
        tau=tau,
        model_version=str(prediction["model_version"]),
        model_variant=prediction["model_variant"],
    )


@dataclass(frozen=True)
class Episode:
    product_id: str
    scorer: str  # "model" or "persistence"
    opened_at: float
    last_flagged_at: float
    score: float  # at the opening prediction
    peak_score: float
    threshold: float
    volatility: float | None  # at the opening prediction
    tau: float | None
    model_version: str
    model_variant: str
    peak_realized: float | None = None  # the highest realized volatility within the horizon
    flagged: int = 1  # predictions at or above the threshold
    closed_at: float | None = None
    outcome: Outcome | None = None

    @property
    def episode_id(self) -> str:
        return f"{self.product_id}/{self.scorer}/{round(self.opened_at * 1000)}"

    def as_dict(self) -> dict:
        return {
            "episode_id": self.episode_id,
            "product_id": self.product_id,
            "scorer": self.scorer,
            "opened_at": self.opened_at,
            "last_flagged_at": self.last_flagged_at,
            "closed_at": self.closed_at,
            "score": self.score,
            "peak_score": self.peak_score,
            "threshold": self.threshold,
            "volatility": self.volatility,
            "tau": self.tau,
            "peak_realized": self.peak_realized,
            "flagged": self.flagged,
            "model_version": self.model_version,
            "model_variant": self.model_variant,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class EpisodeEvent:
    kind: EventKind
    episode: Episode


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass
class EpisodeTracker:
    """Opens, closes and matures the episodes of one scorer, for every product."""

    quiet_s: float
    scorer: str = "model"
    horizon_s: float = HORIZON_S
    clocks: dict[str, float] = field(default_factory=dict)  # per product: latest event time
    open: dict[str, Episode] = field(default_factory=dict)
    maturing: list[Episode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.quiet_s > 0:
            raise ValueError(f"quiet_s must be positive seconds, not {self.quiet_s}")

    def flags(self, obs: Observation) -> tuple[bool, float]:
        """Whether this scorer flags the observation, and its score."""
        if self.scorer == "model":
            return obs.score >= obs.threshold, obs.score
        value, tau = _finite(obs.persistence), _finite(obs.tau)
        return value is not None and tau is not None and value >= tau, value or 0.0

    def observe(self, obs: Observation) -> list[EpisodeEvent]:
        """Take one observation (in event-time order per product); the events it causes."""
        realized = _finite(obs.volatility)
        if realized is not None:
            self._record_realized(obs.product_id, obs.ts, realized)
        events = self.advance(obs.product_id, obs.ts)
        flagged, score = self.flags(obs)
        if not flagged:
            return events
        current = self.open.get(obs.product_id)
        if current is not None:
            self.open[obs.product_id] = replace(
                current,
                last_flagged_at=max(current.last_flagged_at, obs.ts),
                peak_score=max(current.peak_score, score),
                flagged=current.flagged + 1,
            )
            return events
        threshold = obs.threshold if self.scorer == "model" else (obs.tau or math.nan)
        episode = Episode(
            product_id=obs.product_id,
            scorer=self.scorer,
            opened_at=obs.ts,
            last_flagged_at=obs.ts,
            score=score,
            peak_score=score,
            threshold=threshold,
            volatility=realized,
            tau=_finite(obs.tau),
            model_version=obs.model_version,
            model_variant=obs.model_variant,
        )
        self.open[obs.product_id] = episode
        events.append(EpisodeEvent("opened", episode))
        return events

    def advance(self, product: str, now: float) -> list[EpisodeEvent]:
        """Move a product's stream time to ``now`` (never back): close its episode once quiet,
        mature its old ones."""
        clock = self.clocks[product] = max(self.clocks.get(product, -math.inf), now)
        events = []
        episode = self.open.get(product)
        if episode is not None and clock - episode.last_flagged_at >= self.quiet_s:
            closed = replace(episode, closed_at=episode.last_flagged_at + self.quiet_s)
            del self.open[product]
            self.maturing.append(closed)
            events.append(EpisodeEvent("closed", closed))
        still = []
        for episode in self.maturing:
            if episode.product_id == product and clock >= episode.last_flagged_at + self.horizon_s:
                events.append(EpisodeEvent("matured", replace(episode, outcome=_outcome(episode))))
            else:
                still.append(episode)
        self.maturing = still
        return events

    def _record_realized(self, product: str, ts: float, realized: float) -> None:
        def seen(episode: Episode) -> Episode:
            if not episode.opened_at < ts <= episode.last_flagged_at + self.horizon_s:
                return episode
            peak = episode.peak_realized
            if peak is not None and peak >= realized:
                return episode  # nothing new: no copy
            return replace(episode, peak_realized=realized)

        if product in self.open:
            self.open[product] = seen(self.open[product])
        self.maturing = [seen(e) if e.product_id == product else e for e in self.maturing]


def _outcome(episode: Episode) -> Outcome | None:
    if episode.tau is None or episode.peak_realized is None:
        return None
    return "hit" if episode.peak_realized >= episode.tau else "false_alarm"


def episodes_of(
    observations: list[Observation], quiet_s: float, scorer: str = "model"
) -> list[Episode]:
    """Every episode of a recorded stream, closed and matured at its end where time allows
    (the batch path: the timeline and the tests run the stream's own tracker over it)."""
    tracker = EpisodeTracker(quiet_s, scorer=scorer)
    done: dict[str, Episode] = {}
    for obs in sorted(observations, key=lambda o: o.ts):
        for event in tracker.observe(obs):
            done[event.episode.episode_id] = event.episode
    for episode in tracker.open.values():
        done[episode.episode_id] = episode
    for episode in tracker.maturing:
        done[episode.episode_id] = episode
    return sorted(done.values(), key=lambda e: (e.opened_at, e.product_id))
