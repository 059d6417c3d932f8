"""Finite inputs that overflow the model: ``POST /predict``'s work refuses them naming the row and
the fields, instead of answering a null score."""

from __future__ import annotations

import numpy as np
import pytest

from bentos.service import ServiceMetrics, UnscorableRows, culprit_fields, score_rows
from tasks.core.features import FEATURE_NAMES
from tasks.io.model_source import ServedModel
from tests.integration.serving_support import fitted_har_rv, overflowing_row


@pytest.fixture(scope="module")
def model():
    predictor, _ = fitted_har_rv()
    return ServedModel(predictor, "volatility-spike", "7", "ml", "champion", "run", {}, 0.0)


def test_an_overflowing_row_is_refused_naming_its_fields(model):
    row = overflowing_row(model.predictor)
    culprits = [FEATURE_NAMES[j] for j in culprit_fields(model.predictor, row)]
    rows = [{"ret_mean": 0.01, "n": 50}, dict(zip(FEATURE_NAMES, row.tolist(), strict=True))]
    with pytest.raises(UnscorableRows) as refused:
        score_rows(model, rows, ServiceMetrics())
    message = str(refused.value)
    assert refused.value.error_code == 422
    assert "rows[1]: " in message and "rows[0]" not in message
    assert all(f"{name}=" in message for name in culprits)
    # leaving those fields out gives a finite score: they are the cause
    kept = {k: v for k, v in rows[1].items() if k not in culprits}
    scores = score_rows(model, [rows[0], kept], ServiceMetrics()).scores
    assert np.isfinite(scores).all()


def test_clean_rows_are_scored(model):
    response = score_rows(model, [{"ret_mean": 0.01, "n": 50}, {}], ServiceMetrics())
    assert np.isfinite(response.scores).all() and len(response.scores) == 2
