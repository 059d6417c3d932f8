"""A property-based fuzz of ``POST /predict`` from the service's own OpenAPI document (BentoML's
``/docs.json``), against the real ``bentoml serve`` process: bodies that fit the schema and bodies
that break it alike must never get a 5xx, valid ones must be scored (200), invalid ones refused
(400), and every response must match the documented schema. BentoML's document does not mark the
body required, so a "valid" case without a body is refused too.

(Schemathesis's lazy pytest fixture loader does not run under pytest 9, so the strategy is used
with Hypothesis directly.)"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_predict_never_answers_with_a_server_error(bento, mode):
    schema = schemathesis.openapi.from_url(f"{bento.url}/docs.json")
    operation = schema["/predict"]["POST"]
    statuses = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def check(case):
        response = case.call(timeout=30)
        assert response.status_code < 500, response.text
        has_body = case.body is not NOT_SET
        valid = mode.is_positive and has_body
        assert response.status_code == (200 if valid else 400), response.text
        case.validate_response(
            response, excluded_checks=[] if has_body else [positive_data_acceptance]
        )
        statuses.add(response.status_code)

    check()
    assert (200 in statuses) is mode.is_positive and statuses <= {200, 400}
