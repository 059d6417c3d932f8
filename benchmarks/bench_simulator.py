"""Market simulator: generation speed, and its stylized facts beside the real recordings'.

- ``speed``: seconds to generate 60 minutes of BTC-USD and ETH-USD as envelopes, and to write them
  as a gzip recording (best of ``--repeat``);
- ``facts``: :func:`tasks.sim.market_stats.stylized_facts` of the real BTC-USD recordings in
  ../shared/data (when present) and of ``--minutes`` simulated minutes per product and seed;
- ``spikes``: how predictable a volatility spike (forward 60 s realized volatility at or above its
  training 90th percentile) is from the trailing 60 s alone: PR-AUC of persistence (trailing
  realized volatility), of the trailing tick count alone, and of a logistic regression on trailing
  volatility, tick count, spread and imbalance (see :func:`spike_predictability`).

Prints one JSON object. The figures in docs/simulator.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from tasks.core.messages import Tick, parse_envelope, ticks_from_envelope, to_tick
from tasks.io.recordings import BadLine, expand_inputs, read_ticks
from tasks.sim.market_stats import SecondGrid, facts_by_product, statistics_grid
from tasks.sim.simulator import simulate_envelopes
from tasks.sim.writer import write_recordings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"
WINDOW = 60


def speed(repeat: int) -> dict[str, float]:
    gen, write, messages, size = [], [], 0, 0
    for _ in range(repeat):
        began = time.perf_counter()
        messages = sum(1 for _ in simulate_envelopes(minutes=60))
        gen.append(time.perf_counter() - began)
        with tempfile.TemporaryDirectory() as tmp:
            began = time.perf_counter()
            summary = write_recordings(tmp, minutes=60)
            write.append(time.perf_counter() - began)
            size = sum(p.stat().st_size for p in summary.files)
    return {
        "generate_60min_2_products_s": round(min(gen), 3),
        "write_60min_2_products_s": round(min(write), 3),
        "messages_60min": messages,
        "gzip_bytes_60min": size,
    }


def sim_ticks(seed: int, minutes: float) -> dict[str, list[Tick]]:
    by_product: dict[str, list[Tick]] = defaultdict(list)
    for message in simulate_envelopes(seed=seed, minutes=minutes):
        env = parse_envelope(message)
        for raw in ticks_from_envelope(env, received_at=env.timestamp, source=f"seed{seed}"):
            by_product[raw.product_id].append(to_tick(raw))
    return by_product


def real_ticks() -> dict[str, list[Tick]]:
    by_product: dict[str, list[Tick]] = defaultdict(list)
    if SHARED.is_dir():
        for item in read_ticks(expand_inputs([SHARED])):
            if not isinstance(item, BadLine):
                by_product[item.product_id].append(to_tick(item))
    return by_product


def _trailing(x: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last ``window`` values including the current one (NaN-free input)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    out = np.full(len(x), np.nan)
    out[window - 1 :] = c[window:] - c[:-window]
    return out


def spike_rows(grid: SecondGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per second with a full trailing and forward window inside one segment: trailing features
    and forward realized volatility."""
    feats, forward = [], []
    for s in np.unique(grid.segment):
        m = grid.segment == s
        ret = np.nan_to_num(grid.ret_bps[m])
        n = len(ret)
        if n < 2 * WINDOW + 2:
            continue
        rv = np.sqrt(_trailing(ret**2, WINDOW) / WINDOW)
        ticks = _trailing(grid.count[m], WINDOW)
        spread = _trailing(np.nan_to_num(grid.spread_bps[m]), WINDOW) / WINDOW
        imb = np.abs(np.nan_to_num(grid.imbalance[m]))
        fwd = np.full(n, np.nan)
        fwd[: n - WINDOW] = rv[WINDOW:]  # returns over (t, t + 60 s]
        ok = np.isfinite(rv) & np.isfinite(fwd)
        feats.append(np.column_stack([np.log(rv + 1e-3), np.log1p(ticks), spread, imb])[ok])
        forward.append(fwd[ok])
    return np.concatenate(feats), np.concatenate(forward)


def spike_predictability(grid: SecondGrid) -> dict[str, float]:
    """Calibration figure, not a model evaluation: the spike threshold is the 90th percentile of
    the whole stream (regimes drift, so a threshold fitted on the first part can leave the rest
    without a single spike), the logistic regression is fitted on even 10-minute blocks and
    scored on odd ones."""
    x, fwd = spike_rows(grid)
    y = fwd >= np.quantile(fwd, 0.9)
    block = np.arange(len(x)) // 600
    train, test = block % 2 == 0, block % 2 == 1
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-12
    model = LogisticRegression(max_iter=1000).fit((x[train] - mean) / std, y[train])
    scores = model.predict_proba((x[test] - mean) / std)[:, 1]
    y_test = y[test]
    return {
        "test_rows": len(y_test),
        "test_positive_rate": round(float(y_test.mean()), 4),
        "pr_auc_persistence": round(float(average_precision_score(y_test, x[test][:, 0])), 4),
        "pr_auc_ticks_only": round(float(average_precision_score(y_test, x[test][:, 1])), 4),
        "pr_auc_logistic_all": round(float(average_precision_score(y_test, scores)), 4),
    }


def _rounded(facts: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in facts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=300.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    result: dict[str, object] = {"speed": speed(args.repeat)}
    facts: dict[str, object] = {}
    spikes: dict[str, object] = {}
    real = real_ticks()
    for product, ticks in real.items():
        facts[f"real {product}"] = _rounded(facts_by_product(ticks)[product])
        spikes[f"real {product}"] = spike_predictability(statistics_grid(ticks))
    for seed in args.seeds:
        for product, ticks in sim_ticks(seed, args.minutes).items():
            facts[f"sim {product} seed {seed}"] = _rounded(facts_by_product(ticks)[product])
            spikes[f"sim {product} seed {seed}"] = spike_predictability(statistics_grid(ticks))
    result["facts"] = facts
    result["spikes"] = spikes
    print(json.dumps(result))


if __name__ == "__main__":
    main()
