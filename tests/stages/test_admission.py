"""Every entry point admits data the same way: ``cryptovol train`` and ``cryptovol backfill`` set a
recording that breaks the raw contract aside (with its report) instead of using it, as the flows
do; ``--skip-contracts`` uses it and says so."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from tasks import cli
from tasks.io.feature_store import load_dataset
from tasks.settings import Settings, get_settings
from tasks.sim.writer import write_recordings


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recordings")
    write_recordings(out, products=("BTC-USD",), seed=3, minutes=80)
    return out


def _crossed_copy(source: Path, target: Path) -> Path:
    """The recording with one ticker's book crossed (bid above ask): the raw contract fails."""
    with gzip.open(source, "rt") as fh:
        lines = fh.read().splitlines()
    for i, line in enumerate(lines):
        envelope = json.loads(line)
        if envelope.get("channel") == "ticker" and i > 100:
            ticker = envelope["events"][0]["tickers"][0]
            ticker["best_bid"], ticker["best_ask"] = ticker["best_ask"], ticker["best_bid"]
            ticker["best_bid"] = str(float(ticker["best_bid"]) + 5.0)
            lines[i] = json.dumps(envelope)
            break
    with gzip.open(target, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return target


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def mixed(simulated, tmp_path) -> tuple[Path, Path]:
    """A folder of good recordings plus one crossed copy; returns (folder, the bad file)."""
    folder = tmp_path / "mixed"
    shutil.copytree(simulated, folder)
    good = sorted(folder.glob("*.ndjson.gz"))[0]
    bad = _crossed_copy(good, folder / f"crossed-{good.name}")
    return folder, bad


def _quarantined(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.quarantine_dir.glob("*/*") if p.name != "report.json")


def test_train_sets_a_broken_recording_aside(settings, mixed, capsys):
    folder, bad = mixed
    assert cli.main(["train", "--data", str(folder), "--json", "--candidates", "har_logistic"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert str(bad) not in out["admitted"]
    assert len(out["admitted"]) == len(list(folder.glob("*.ndjson.gz"))) - 1
    assert _quarantined(settings) == [bad.name]
    report = json.loads(next(settings.quarantine_dir.glob("*/report.json")).read_text())
    assert report["success"] is False


def test_train_refuses_when_nothing_passes(settings, mixed, capsys):
    _folder, bad = mixed
    assert cli.main(["train", "--data", str(bad)]) == 2
    assert "passed its data contract" in capsys.readouterr().out
    assert _quarantined(settings) == [bad.name]


def test_backfill_sets_it_aside_and_writes_nothing(settings, mixed, tmp_path, capsys):
    _folder, bad = mixed
    out = tmp_path / "features.parquet"
    assert cli.main(["backfill", str(bad), "--out", str(out)]) == 2
    assert not out.exists()
    assert _quarantined(settings) == [bad.name]


def test_skip_contracts_uses_the_recording_and_says_so(settings, mixed, tmp_path, capsys):
    _folder, bad = mixed
    out = tmp_path / "features.parquet"
    assert cli.main(["backfill", str(bad), "--out", str(out), "--skip-contracts"]) == 0
    assert "data contracts skipped" in capsys.readouterr().out
    assert len(load_dataset(out)) > 0
    assert _quarantined(settings) == []
