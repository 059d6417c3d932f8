"""The persistence fall-back in a real MLflow store (SQLite): registered as a version of the
model, made champion with tags saying why, since when and instead of what, served by the model
source like any version; undone by ``rollback`` or ended by a promotion; refused when the champion
moved since it was judged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core.features import FEATURE_NAMES
from tasks.core.live_quality import fit_fallback
from tasks.io import registry
from tasks.io.model_source import ModelSource
from tasks.stages.promote import fall_back_to_persistence, fallback_state, promote, rollback

pytestmark = pytest.mark.integration

WHY = "live PR-AUC below persistence for 2 consecutive checks (1h: 0.200 < 0.300)"


def _live_rows(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    rows = pd.DataFrame(rng.lognormal(-6, 0.3, (n, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    rows["realized_vol_60"] *= np.where(y == 1, 3.0, 1.0)
    rows["ts"] = pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC")
    rows["product_id"] = "BTC-USD"
    rows["y"] = y
    return rows


def test_fall_back_serve_and_undo(sqlite_registry):
    settings = sqlite_registry
    client = registry.connect(settings)
    name = registry.model_name(settings)
    first = registry.alias_version(client, name, registry.CHAMPION)
    rows = _live_rows()
    label = registry.version_tags(client, name, first)
    predictor = fit_fallback(rows, {"mode": "absolute", "tau": float(label["tau"])}, {})
    try:
        change = fall_back_to_persistence(settings, predictor, rows, from_version=first, why=WHY)
        fallback = change.champion
        assert (change.action, change.previous) == ("fallback", first)
        assert registry.alias_version(client, name, registry.CHAMPION) == fallback
        tags = registry.version_tags(client, name, fallback)
        assert tags["fallback"] == "true" and tags["fallback.reason"] == WHY
        assert tags["fallback.from_version"] == first and tags["previous_champion"] == first
        state = fallback_state(client, name)
        assert state == {
            "version": fallback,
            "since": tags["fallback.since"],
            "reason": WHY,
            "from_version": first,
        }
        served = ModelSource(settings, poll_s=60).load()
        assert served.version == fallback and served.predictor.kind == "persistence"
        assert served.fallback == {"since": state["since"], "reason": WHY, "from_version": first}
        assert served.describe()["fallback"]["from_version"] == first

        # undone by hand: the replaced version returns and the model's tags are cleared
        undone = rollback(settings, who="tests", why="the champion was fine")
        assert (undone.champion, undone.previous) == (first, fallback)
        assert fallback_state(client, name) is None

        # judged on a champion that has moved since: refused, champion untouched
        other = next(
            str(v.version)
            for v in client.search_model_versions(f"name='{name}'")
            if str(v.version) not in (first, fallback)
        )
        with pytest.raises(registry.AliasMoved, match=f"expected {other}"):
            fall_back_to_persistence(settings, predictor, rows, from_version=other, why=WHY)
        assert registry.alias_version(client, name, registry.CHAMPION) == first

        # a promotion (as a retrained model passing its gates) ends a fall-back
        again = fall_back_to_persistence(settings, predictor, rows, from_version=first, why=WHY)
        assert fallback_state(client, name)["version"] == again.champion
        promote(settings, first, force=True, who="tests", why="retrained")
        assert fallback_state(client, name) is None
    finally:
        promote(settings, first, force=True, who="tests", why="restore")
