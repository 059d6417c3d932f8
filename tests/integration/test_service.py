"""The BentoML service as users run it: a real ``bentoml serve`` process on a free port, serving
the champion of a real MLflow server; every route, the design notes' request, every kind of bad
input, the baseline variant, and the champion moved by hand under load."""

from __future__ import annotations

import math

import numpy as np
import pytest
from serving_support import EXAMPLE_ROW, POLL_S, Load, get, metrics, predict, sample, wait_for

from bentos.schema import MAX_ROWS
from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from tasks.core.predictions import SCORE_BUCKETS, feature_array
from tasks.io import model_store, registry

pytestmark = pytest.mark.integration


def champion(serving_stack) -> str:
    client = registry.connect(serving_stack.settings)
    return registry.alias_version(client, registry.model_name(serving_stack.settings), "champion")


def test_health_version_and_features(bento, serving_stack):
    health = get(bento, "/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy" and body["model_loaded"] and body["registry_reachable"]
    assert body["version"] == champion(serving_stack)
    assert 0 <= body["seconds_since_registry_check"] < 60

    version = get(bento, "/version").json()
    assert version["model"] == "volatility-spike" and version["model_variant"] == "ml"
    assert version["version"] == body["version"] and version["run_id"]
    client = registry.connect(serving_stack.settings)
    tags = registry.version_tags(client, version["model"], version["version"])
    # the selection may serve a baseline when the candidate does not beat it on this short data
    assert version["model_kind"] == tags["model_kind"]
    assert version["feature_set_version"] == FEATURE_SET_VERSION
    assert version["label"]["tau"] > 0 and 0 < version["threshold"] < 1
    assert version["sha"] and version["model_git_sha"]

    features = get(bento, "/features").json()
    assert [f["name"] for f in features["features"]] == list(FEATURE_NAMES)
    assert all(f["meaning"] != "(undocumented)" and f["unit"] for f in features["features"])
    assert features["max_rows"] == MAX_ROWS


def test_the_design_notes_request(bento):
    response = predict(bento, {"rows": [EXAMPLE_ROW]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "scores",
        "spikes",
        "threshold",
        "model_variant",
        "version",
        "ts",
        "missing",
    }
    (score,) = body["scores"]
    assert 0.0 <= score <= 1.0 and body["spikes"] == [score >= body["threshold"]]
    # the features the row leaves out are missing for the model, and listed
    assert body["missing"] == [[n for n in FEATURE_NAMES if n not in EXAMPLE_ROW]]


def test_scores_are_the_registered_predictors(bento, serving_stack):
    """The service scores rows exactly as the predictor loaded from the registry does: missing
    features are NaN (never zeros), row metadata is ignored."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(50):
        row = {n: float(abs(rng.normal(1e-3, 5e-4))) for n in FEATURE_NAMES if rng.random() > 0.3}
        if i % 2:
            row["ret_std"] = None  # explicit null: missing too
        rows.append({**row, "product_id": "BTC-USD", "ts": "2026-01-01T00:00:00Z"})
    body = predict(bento, {"rows": rows}).json()
    registry.connect(serving_stack.settings)
    predictor = model_store.load_predictor(f"models:/volatility-spike/{body['version']}")
    X, missing = feature_array(rows, predictor.feature_names)
    assert body["missing"] == missing
    np.testing.assert_allclose(body["scores"], predictor.predict_array(X), rtol=0, atol=1e-12)
    zeros = feature_array([{n: 0.0 for n in FEATURE_NAMES}], predictor.feature_names)[0]
    lone = predict(bento, {"rows": [{"n": 50}]}).json()["scores"][0]
    assert lone != pytest.approx(float(predictor.predict_array(zeros)[0]), abs=1e-12)


ROW = {"ret_mean": 0.05}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"rows": [ROW, {"ret_mean": 0.1, "not_a_feature": 1.0}]}, "rows[1].not_a_feature"),
        ({"rows": [{"ret_std": "0.01"}]}, "rows[0].ret_std"),
        ({"rows": [{"n": True}]}, "rows[0].n"),
        ({"rows": [{"n": [50]}]}, "rows[0].n"),
        (b'{"rows": [{"ret_mean": 0.05}, {"ret_std": Infinity}]}', "rows[1].ret_std"),
        (b'{"rows": [{"ret_std": -Infinity}]}', "rows[0].ret_std"),
        (b'{"rows": [{"ret_std": NaN}]}', "rows[0].ret_std"),
        (b'{"rows": [{"n": 1e999}]}', "rows[0].n"),
        ({"rows": []}, "rows"),
        ({"rows": [ROW] * (MAX_ROWS + 1)}, "rows"),
        ({"rows": {"ret_mean": 0.05}}, "rows"),
        ({"rows": [0.05]}, "rows[0]"),
        ({"data": [ROW]}, "rows"),
        (b'{"rows": [{"ret_mean": 0.05}', "body"),
        (b"", "rows"),
    ],
)
def test_bad_input_is_a_400_naming_the_row_and_field(bento, body, where):
    response = predict(bento, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(where + ":") or f"; {where}:" in error, error


def test_rejections_and_predictions_are_counted(bento):
    before = metrics(bento)
    rows = [{"realized_vol_60": 10.0**-k} for k in range(2, 8)]
    scored = predict(bento, {"rows": rows}).json()
    assert predict(bento, {"rows": [{"bogus": 1}]}).status_code == 400
    after = metrics(bento)
    version, variant = scored["version"], {"variant": "ml"}

    def delta(name, **labels):
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    route = {"route": "/predict"}
    assert delta("cryptovol_service_requests_total", status="200", **route) == 1
    assert delta("cryptovol_service_requests_total", status="400", **route) == 1
    assert delta("cryptovol_service_request_seconds_count", **route) == 2
    assert delta("cryptovol_service_predictions_total", version=version, **variant) == len(rows)
    assert delta("cryptovol_service_spikes_total", version=version, **variant) == sum(
        scored["spikes"]
    )
    assert delta("cryptovol_service_score_count", **variant) == len(rows)
    assert delta("cryptovol_service_score_sum", **variant) == pytest.approx(sum(scored["scores"]))
    assert sample(after, "cryptovol_service_model_version", **variant) == float(version)
    assert sample(after, "cryptovol_service_alias_version", **variant) == float(version)
    assert sample(after, "cryptovol_service_registry_up", **variant) == 1.0
    assert sample(after, "cryptovol_service_registry_check_age_seconds", **variant) < 60
    assert sample(after, "cryptovol_service_model_reloads_total", **variant) is not None
    assert sample(after, "cryptovol_service_model_reload_failures_total", **variant) is not None
    buckets = [
        float(s.labels["le"])
        for s in after["cryptovol_service_score"]
        if s.name.endswith("_bucket") and s.labels["variant"] == "ml"
    ]
    assert buckets == [*SCORE_BUCKETS, math.inf]


def test_baseline_variant(bento_servers, serving_stack):
    baseline = bento_servers["baseline"]
    version = get(baseline, "/version").json()
    assert version["model"] == "volatility-spike-baseline"
    assert version["model_variant"] == "baseline" and version["model_kind"] == "zscore"
    body = predict(baseline, {"rows": [EXAMPLE_ROW, {"vol_ratio_60_300": 3.0}]}).json()
    assert body["model_variant"] == "baseline" and len(body["scores"]) == 2
    assert all(math.isfinite(s) for s in body["scores"])
    # the z-score ranks a surge of short-term volatility above a row without it
    assert body["scores"][1] > body["scores"][0]
    assert get(baseline, "/health").json()["model_variant"] == "baseline"


def test_alias_moved_by_hand_under_load(bento, serving_stack):
    """As in the MLflow UI: the alias moves, the service follows within the poll interval (plus
    the load of the model), and no request fails meanwhile."""
    first, second = serving_stack.versions
    client = registry.connect(serving_stack.settings)
    name = registry.model_name(serving_stack.settings)
    assert get(bento, "/version").json()["version"] == first
    with Load(bento.url) as load:
        wait_for(lambda: load.served() > 20, 30)
        client.set_registered_model_alias(name, "champion", second)
        switched = wait_for(lambda: get(bento, "/version").json()["version"] == second, POLL_S + 20)
        client.set_registered_model_alias(name, "champion", first)
        back = wait_for(lambda: get(bento, "/version").json()["version"] == first, POLL_S + 20)
        served_before = load.served()
        wait_for(lambda: load.served() > served_before + 20, 30)
    assert switched and back
    assert load.errors == [] and set(load.statuses) == {200}, (load.statuses, load.errors[:3])
    assert {first, second} <= set(load.versions)
    assert load.versions[-1] == first
    assert get(bento, "/health").json()["reloads"] >= 2
