"""The model source on a real MLflow store (SQLite): it loads the champion, follows the alias,
keeps the current model when a version fails to load or the registry cannot be reached, tells a
missing champion from an unreachable registry, and says all of it in its metrics."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from tasks.io import registry
from tasks.io.model_source import (
    FAIL_FAST_ENV,
    ModelLoadError,
    ModelSource,
    ModelSourceMetrics,
    NoChampion,
)
from tasks.io.registry import RegistryUnavailable
from tasks.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def store(sqlite_registry) -> Settings:
    return sqlite_registry


def value(metrics: ModelSourceMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name, {"variant": "ml"})


def test_follows_the_alias_and_survives_bad_versions(store):
    metrics = ModelSourceMetrics("cryptovol_test", "ml", CollectorRegistry())
    source = ModelSource(store, metrics=metrics, poll_s=0.2)
    loaded = source.load()
    assert (loaded.version, loaded.variant, loaded.name) == ("1", "ml", "volatility-spike")
    assert loaded.stamp.threshold == loaded.predictor.threshold
    assert value(metrics, "cryptovol_test_model_version") == 1.0
    assert value(metrics, "cryptovol_test_registry_up") == 1.0

    client = registry.connect(store)
    name = registry.model_name(store)
    source.start()
    try:
        client.set_registered_model_alias(name, "champion", "2")
        deadline = time.monotonic() + 30
        while source.current.version != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.current.version == "2"
        assert loaded.version == "1", "a model read before the swap stays what it was"
        assert source.health()["reloads"] == 1
        assert value(metrics, "cryptovol_test_model_reloads_total") == 1.0
        assert value(metrics, "cryptovol_test_alias_version") == 2.0
    finally:
        source.stop()

    # a version whose artifact cannot be loaded: counted, retried, the current model stays
    broken = ModelSource(store, metrics=metrics, loader=_refuse)
    broken._current = source.current
    client.set_registered_model_alias(name, "champion", "1")
    assert broken.check().version == "2"
    assert broken.check().version == "2"
    assert broken.health()["reload_failures"] == 2
    assert "loading version 1 failed" in broken.health()["last_error"]
    assert value(metrics, "cryptovol_test_model_reload_failures_total") == 2.0

    # the alias removed: keep serving what is loaded, report the alias as pointing nowhere
    client.delete_registered_model_alias(name, "champion")
    assert source.check().version == "2"
    assert source.health()["alias_version"] is None and source.health()["registry_reachable"]
    assert value(metrics, "cryptovol_test_alias_version") == 0.0
    client.set_registered_model_alias(name, "champion", "1")


def _refuse(uri: str):
    raise OSError(f"artifact of {uri} is gone")


def test_a_model_that_cannot_be_loaded_at_start_says_which(store):
    with pytest.raises(ModelLoadError, match=r"volatility-spike version 1 .* could not be loaded"):
        ModelSource(store, loader=_refuse).load()


def test_baseline_variant(store):
    source = ModelSource(store, variant="baseline")
    model = source.load()
    assert model.name == "volatility-spike-baseline" and model.predictor.kind == "zscore"


def test_no_champion_says_how_to_make_one(tmp_path):
    empty = Settings(
        data_dir=tmp_path / "data", mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    source = ModelSource(empty)
    with pytest.raises(NoChampion, match=r"volatility-spike@champion does not exist") as err:
        source.load()
    assert "cryptovol train" in str(err.value) and "cryptovol promote" in str(err.value)
    assert source.health()["registry_reachable"] is True


def test_an_unreachable_registry_is_not_a_missing_champion(tmp_path, monkeypatch):
    for key, value in FAIL_FAST_ENV.items():  # what fail_fast_registry() sets, for this test only
        monkeypatch.setenv(key, value)
    dead = Settings(data_dir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:9")
    source = ModelSource(dead)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="cannot reach the MLflow tracking server"):
        source.load()
    assert time.monotonic() - started < 30, "a dead registry must fail fast, not retry for minutes"
    health = source.health()
    assert health["registry_reachable"] is False and health["registry_check_failures"] == 1
