"""Live quality when tau separates nothing, and the persistence fall-back fit on live rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core.features import FEATURE_NAMES
from tasks.core.live_quality import fit_fallback, quality

LABEL = {"mode": "absolute", "tau": 0.002, "horizon_s": 60}


def rows(y: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Labelled served rows whose 60 s volatility is higher where a spike follows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    frame = pd.DataFrame(rng.lognormal(-6, 0.3, (n, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    frame["realized_vol_60"] *= np.where(y == 1, 3.0, 1.0)
    frame["ts"] = pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC")
    frame["product_id"] = "BTC-USD"
    frame["y"] = y
    frame["score"] = rng.random(n)
    frame["spike"] = frame["score"] > 0.5
    frame["model_version"] = "3"
    return frame


@pytest.mark.parametrize(("value", "words"), [(1, "every matured label"), (0, "no matured")])
def test_a_window_of_one_kind_of_label_says_tau_separates_nothing(value, words):
    figures = quality(rows(np.full(600, value)))
    assert figures["tau_degenerate"].startswith(words)
    assert figures["pr_auc"] is figures["persistence_pr_auc"] is figures["zscore_pr_auc"] is None
    assert figures["span_s"] == 599.0


def test_mixed_labels_keep_their_figures():
    figures = quality(rows((np.arange(600) % 10 == 0).astype(int)))
    assert figures["tau_degenerate"] is None and figures["pr_auc"] is not None


def test_the_fallback_is_persistence_fit_on_the_rows():
    y = (np.random.default_rng(1).random(2000) < 0.1).astype(int)
    live = rows(y)
    predictor = fit_fallback(live, LABEL, {"fallback_from": "3"})
    assert predictor.kind == "persistence" and predictor.label == LABEL
    scores = predictor.predict_proba(live)
    assert 0.0 < predictor.threshold < 1.0
    # it ranks as the 60 s volatility does, and flags most of the spikes that volatility shows
    assert (
        np.corrcoef(
            np.argsort(np.argsort(scores)), np.argsort(np.argsort(live["realized_vol_60"]))
        )[0, 1]
        > 0.99
    )
    assert (scores[y == 1] >= predictor.threshold).mean() > 0.5
    with pytest.raises(ValueError, match="every matured label is a spike"):
        fit_fallback(rows(np.ones(100, int)), LABEL, {})
