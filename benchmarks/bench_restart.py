"""How exactly does an engine restarted mid-stream reproduce an uninterrupted engine's rows?

The featurizer rebuilds a restarted engine by re-reading (warming up on) the ticks of the last
``--lookback`` seconds of event time before it produces again. This replays that on two
streams: the real recordings in ../shared/data (if present) and a synthetic one with two
products, late ticks, re-sent duplicates, gaps and missing quantities. For ``--starts`` random
start ticks F it feeds a fresh engine from F on and compares its rows with the uninterrupted
engine's, tick by tick:

- ``compared``: rows at event time ``ts_F + lookback`` or later (the ones a featurizer would
  produce), up to ``--horizon`` seconds after that;
- ``differing``, ``max_abs_diff``, ``max_rel_diff``: among those, rows not bit-identical (NaN
  equals NaN) and the largest differences;
- ``last_difference_s``: over every row from F on, how long after ``ts_F`` the last difference
  came (the look-back a warm-up actually needed on this data).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from tasks.core.features import EngineConfig, FeatureEngine, FeatureRow, restart_lookback_s
from tasks.core.messages import Tick
from tasks.io.recordings import expand_inputs
from tasks.stages.backfill import load_ticks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"


def synthetic_ticks(seconds: float = 3600.0, rate: float = 10.0, seed: int = 3) -> list[Tick]:
    """Two products in arrival order: late ticks, duplicates sent again, gaps, missing inputs."""
    rng = random.Random(seed)
    mids = {"BTC-USD": 90_000.0, "ETH-USD": 3_000.0}
    ticks: list[Tick] = []
    ts, seq, end = 1_765_000_000.0, 0, 1_765_000_000.0 + seconds
    while ts < end:
        ts += rng.expovariate(2 * rate)
        if rng.random() < 2e-4:
            ts += rng.uniform(20.0, 60.0)  # silences around max_gap_s
        product = rng.choice(tuple(mids))
        mid = mids[product] = mids[product] * math.exp(rng.gauss(0.0, 1e-4))
        half = 0.005 * rng.randint(1, 40)
        qty = rng.random() > 0.05
        late = ts - rng.uniform(0.0, 4.0) if rng.random() < 0.02 else ts
        ticks.append(
            Tick(
                product,
                late,
                "synthetic",
                seq,
                0,
                mid,
                mid - half,
                mid + half,
                rng.uniform(0, 2) if qty else math.nan,
                rng.uniform(0, 2) if qty else math.nan,
                1e4,
            )
        )
        seq += 1
        if rng.random() < 0.005:  # a producer retry: the last few records once more
            ticks.extend(ticks[-rng.randint(1, 5) :])
    return ticks


def differences(a: FeatureRow | None, b: FeatureRow | None) -> tuple[float, float] | None:
    """(max abs, max rel) difference of two rows, or None if bit-identical (NaN equals NaN)."""
    if a is None or b is None:
        return None if a is b else (math.inf, math.inf)
    if a.ts != b.ts:
        return (math.inf, math.inf)
    worst_abs = worst_rel = 0.0
    identical = True
    for x, y in zip(a.values, b.values, strict=True):
        if x == y or (x != x and y != y):
            continue
        identical = False
        diff = abs(x - y)
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(abs(x), abs(y)) if diff == diff else math.inf)
    return None if identical else (worst_abs, worst_rel)


def replay_restarts(
    ticks: list[Tick], starts: int, lookback: float, horizon: float, seed: int
) -> dict[str, float]:
    config = EngineConfig()
    full = FeatureEngine(config)
    rows = [full.process(t) for t in ticks]
    rng = random.Random(seed)
    candidates = [i for i, t in enumerate(ticks) if t.ts + lookback + horizon <= ticks[-1].ts]
    compared = differing = 0
    max_abs = max_rel = last_difference = 0.0
    for start in rng.sample(candidates, min(starts, len(candidates))):
        first_ts: dict[str, float] = {}
        engine = FeatureEngine(config)
        for i in range(start, len(ticks)):
            tick = ticks[i]
            t0 = first_ts.setdefault(tick.product_id, tick.ts)
            if tick.ts > t0 + lookback + horizon:
                break
            row = engine.process(tick)
            diff = differences(rows[i], row)
            reference = rows[i] if rows[i] is not None else row
            when = reference.ts if reference is not None else tick.ts
            if diff is not None:
                last_difference = max(last_difference, when - t0)
            if when >= t0 + lookback:
                compared += 1
                if diff is not None:
                    differing += 1
                    max_abs = max(max_abs, diff[0])
                    max_rel = max(max_rel, diff[1])
    return {
        "ticks": len(ticks),
        "starts": min(starts, len(candidates)),
        "compared": compared,
        "differing": differing,
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "last_difference_s": round(last_difference, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookback", type=float, default=restart_lookback_s(EngineConfig()))
    parser.add_argument("--starts", type=int, default=100)
    parser.add_argument("--horizon", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    figures: dict[str, object] = {"lookback_s": args.lookback}
    streams = {"synthetic": synthetic_ticks()}
    if SHARED.is_dir():
        streams["real"] = load_ticks(expand_inputs([SHARED]))
    for name, ticks in streams.items():
        figures[name] = replay_restarts(ticks, args.starts, args.lookback, args.horizon, args.seed)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
