"""Extreme but finite inputs through the real ``bentoml serve``, with a linear champion that
overflows on them: every answer is a 200 with finite probabilities or a 422 naming the row and
fields, never a 200 with a null score (Hypothesis draws rows of huge, tiny, negative and odd
values)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import (
    fitted_har_rv,
    get,
    overflowing_row,
    predict,
    register_predictor,
    wait_for,
)

from tasks.core.features import FEATURE_NAMES
from tasks.stages.promote import promote

pytestmark = pytest.mark.integration

EXTREMES = st.sampled_from(
    [1e308, -1e308, 1.7976931348623157e308, 1e-320, -1e-320, 5e-324, -0.0, 1e15, -1e15, -5.0]
)
ODD = st.one_of(EXTREMES, st.floats(allow_nan=False, allow_infinity=False))
# rows of a few features at odd values, and rows of every feature at extremes (a linear model
# overflows when huge values of opposite signs meet)
ROW = st.one_of(
    st.dictionaries(st.sampled_from(FEATURE_NAMES), ODD, min_size=1),
    st.fixed_dictionaries({name: EXTREMES for name in FEATURE_NAMES}),
)


@pytest.fixture(scope="module")
def linear_champion(bento, serving_stack):
    predictor, frame = fitted_har_rv()
    version = register_predictor(serving_stack.settings, predictor, frame)
    promote(serving_stack.settings, version, force=True, who="tests", why="extreme inputs")
    try:
        assert wait_for(lambda: get(bento, "/version").json()["version"] == version, 60)
        yield predictor
    finally:
        first = serving_stack.versions[0]
        promote(serving_stack.settings, first, force=True, who="tests", why="restore")
        wait_for(lambda: get(bento, "/version").json()["version"] == first, 60)


def _check(response, rows) -> int:
    assert response.status_code in (200, 422), response.text
    body = response.json()
    if response.status_code == 200:
        assert all(s is not None and math.isfinite(s) and 0 <= s <= 1 for s in body["scores"])
    else:
        error = body["error"]
        assert error.startswith("the model gives no finite score for these values: rows[")
        named = int(error.split("rows[", 1)[1].split("]", 1)[0])
        assert any(f"{name}=" in error for name in rows[named])
    return response.status_code


def test_a_known_overflow_is_a_422_naming_the_fields(bento, linear_champion):
    row = overflowing_row(linear_champion)
    rows = [{"ret_mean": 0.01}, dict(zip(FEATURE_NAMES, row.tolist(), strict=True))]
    assert _check(predict(bento, {"rows": rows}), rows) == 422


@given(rows=st.lists(ROW, min_size=1, max_size=5))
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_extreme_rows_get_finite_scores_or_a_422(bento, linear_champion, rows):
    _check(predict(bento, {"rows": rows}), rows)
