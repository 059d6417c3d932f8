"""A synthetic data set with the backfill's schema, for model and evaluation tests.

Per product, one row per second: a latent log-volatility follows a slow AR(1) with occasional
bursts; the backward volatility features are noisy views of its recent level, the forward 60 s
volatility (the label's input) a noisy view of its level a minute ahead. A precursor shows in
``tick_intensity_60`` before each burst, so a model can beat persistence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION

START = pd.Timestamp("2026-01-01T00:00:00Z")


def _product_frame(product: str, seconds: int, rng: np.random.Generator) -> pd.DataFrame:
    n = seconds + 120
    h = np.zeros(n)
    burst = np.zeros(n)
    for t in range(1, n):
        h[t] = 0.995 * h[t - 1] + 0.03 * rng.standard_normal()
        burst[t] = 0.97 * burst[t - 1]
        if rng.random() < 1 / 400:
            burst[t] += 1.5
    log_vol = h + burst - 9.0
    precursor = np.zeros(n)
    precursor[:-30] = burst[30:] - burst[:-30] * 0.97**30  # the burst's onset, 30 s early
    vol = np.exp(log_vol)

    def noisy(x: np.ndarray, scale: float) -> np.ndarray:
        return x * np.exp(scale * rng.standard_normal(len(x)))

    rows = slice(0, seconds)
    frame = pd.DataFrame(index=range(seconds))
    for name in FEATURE_NAMES:
        frame[name] = rng.standard_normal(seconds)
    back_60 = np.convolve(vol, np.ones(60) / 60)[:n]
    back_300 = np.convolve(vol, np.ones(300) / 300)[:n]
    frame["realized_vol_1s_60"] = noisy(back_60, 0.2)[rows] * np.sqrt(60)
    frame["realized_vol_1s_300"] = noisy(back_300, 0.1)[rows] * np.sqrt(300)
    frame["realized_vol_30"] = noisy(vol, 0.3)[rows] * np.sqrt(30)
    frame["realized_vol_60"] = noisy(back_60, 0.25)[rows] * np.sqrt(60)
    frame["realized_vol_300"] = noisy(back_300, 0.15)[rows] * np.sqrt(300)
    frame["vol_ratio_60_300"] = back_60[rows] / back_300[rows]
    frame["tick_intensity_60"] = np.clip(
        2.0 + 3.0 * precursor[rows] + 0.3 * rng.standard_normal(seconds), 0, None
    )
    frame["n"] = rng.poisson(50, seconds).astype(float)
    cumulative = np.concatenate(([0.0], np.cumsum(vol)))
    forward = (cumulative[61 : seconds + 61] - cumulative[1 : seconds + 1]) / 60
    frame["fwd_vol_60"] = noisy(forward, 0.1) * np.sqrt(60)
    frame["trail_vol_900"] = frame["realized_vol_1s_300"]
    missing = rng.random(seconds) < 0.02
    frame.loc[missing, ["realized_vol_1s_60", "vol_ratio_60_300"]] = np.nan
    frame.loc[seconds - 60 :, "fwd_vol_60"] = np.nan  # no label at the end of a recording
    frame.insert(0, "ts", START + pd.to_timedelta(np.arange(seconds), unit="s"))
    frame.insert(0, "product_id", product)
    frame["tick_ts"] = frame["ts"]
    frame["record_id"] = [f"{product}-{i}" for i in range(seconds)]
    frame["feature_set_version"] = FEATURE_SET_VERSION
    frame["segment"] = 0
    frame["source"] = f"{product}.ndjson.gz"
    return frame


def synthetic_dataset(
    seconds: int = 3600, products: tuple[str, ...] = ("BTC-USD", "ETH-USD"), seed: int = 7
) -> pd.DataFrame:
    """Rows of every product, sorted by time, with the backfill's columns."""
    rng = np.random.default_rng(seed)
    frames = [_product_frame(p, seconds, rng) for p in products]
    return pd.concat(frames).sort_values(["ts", "product_id"]).reset_index(drop=True)


VOLATILITY_COLUMNS = (
    "realized_vol_1s_60",
    "realized_vol_1s_300",
    "realized_vol_30",
    "realized_vol_60",
    "realized_vol_300",
    "fwd_vol_60",
    "trail_vol_900",
)


def synthetic_sessions(
    levels: tuple[float, ...] = (1.0, 2.5, 1.0),
    seconds: int = 2400,
    gap_s: int = 7200,
    seed: int = 7,
) -> pd.DataFrame:
    """Sessions of :func:`synthetic_dataset` separated by ``gap_s`` without rows, the volatility
    of each scaled by its level (a market regime twice as volatile is ``2.0``)."""
    frames = []
    for i, level in enumerate(levels):
        frame = synthetic_dataset(seconds=seconds, seed=seed + i)
        frame[list(VOLATILITY_COLUMNS)] *= level
        shift = pd.Timedelta(seconds=i * (seconds + gap_s))
        frame["ts"] += shift
        frame["tick_ts"] += shift
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
