"""The /predict contract without a server: what the request schema accepts and refuses, the
readable 400 message, and the service's bulk score histogram."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from bentos.schema import MAX_ROWS, PredictRequest
from bentos.service import ServiceMetrics, _rewrite_400, readable_error


def test_valid_rows_keep_numbers_nulls_and_metadata():
    request = PredictRequest.model_validate_json(
        b'{"rows": [{"ret_mean": 0.05, "n": 50, "ret_std": null, "product_id": "BTC-USD",'
        b' "ts": "2026-01-01T00:00:00Z"}, {}]}'
    )
    assert request.rows[0] == {
        "ret_mean": 0.05,
        "n": 50,
        "ret_std": None,
        "product_id": "BTC-USD",
        "ts": "2026-01-01T00:00:00Z",
    }
    assert request.rows[1] == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"rows": [{}, {"nope": 1}]}', "rows[1].nope: unknown feature name"),
        (b'{"rows": [{"n": "50"}]}', "rows[0].n: not a number"),
        (b'{"rows": [{"n": false}]}', "rows[0].n: not a number"),
        (b'{"rows": [{"n": Infinity}]}', "rows[0].n: not a finite number"),
        (b'{"rows": [{"n": NaN}]}', "rows[0].n: not a finite number"),
        (b'{"rows": [{"n": 1e400}]}', "rows[0].n: not a finite number"),
        (b'{"rows": []}', "rows: List should have at least 1 item"),
        (b'{"rows": {}}', "rows: Input should be a valid array"),
        (b"{}", "rows: Field required"),
        (b"[", "body: Invalid JSON"),
    ],
)
def test_refused_rows_are_named(body, message):
    with pytest.raises(ValidationError) as err:
        PredictRequest.model_validate_json(body)
    assert readable_error(err.value.errors()).startswith(message)


def test_oversized_batches_are_refused():
    rows = ",".join(["{}"] * (MAX_ROWS + 1))
    with pytest.raises(ValidationError) as err:
        PredictRequest.model_validate_json(f'{{"rows": [{rows}]}}')
    assert readable_error(err.value.errors()).startswith("rows: List should have at most")


def test_the_400_body_matches_the_documented_error_schema():
    bentoml_body = json.dumps(
        {
            "error": "1 validation error for Input",
            "detail": [{"type": "float_type", "loc": ["rows", 2, "n"], "msg": "x", "url": "u"}],
        }
    ).encode()
    rewritten = json.loads(_rewrite_400(bentoml_body))
    assert rewritten == {
        "error": "rows[2].n: not a number",
        "errors": [{"loc": ["rows", 2, "n"], "type": "float_type", "msg": "x"}],
    }
    assert _rewrite_400(b'{"error": "something else"}') == b'{"error": "something else"}'


def test_bulk_score_histogram_equals_observing_each_score():
    bulk, each = ServiceMetrics(), ServiceMetrics()
    scores = np.random.default_rng(1).random(1000)
    bulk.observe_scores("ml", scores)
    for score in scores:
        each.score.labels("ml").observe(float(score))
    samples = [
        [(s.name, s.labels.get("le"), s.value) for s in m.score.collect()[0].samples]
        for m in (bulk, each)
    ]
    names = [(name, le) for name, le, _ in samples[0]]
    assert names == [(name, le) for name, le, _ in samples[1]]
    np.testing.assert_allclose([v for *_, v in samples[0]], [v for *_, v in samples[1]])
