"""The data contracts on data the project makes itself: clean data passes, each broken rule fails
naming its column, and ``cryptovol validate-data`` exits 0, 1 or 2 accordingly."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from data_contracts.frames import read_raw_batch
from data_contracts.suites import FEATURE_RULES, ContractOptions, rule_for
from data_contracts.validate import validate_frame, validate_raw_batch
from tasks.cli import main as cli
from tasks.core.features import FEATURE_NAMES
from tasks.core.labels import LabelSpec
from tasks.io.feature_store import load_dataset
from tasks.stages.backfill import backfill


@pytest.fixture(scope="module")
def features(tmp_path_factory, envelopes, write_lines) -> pd.DataFrame:
    """The backfill of a clean 900-tick recording (about 20 minutes)."""
    root = tmp_path_factory.mktemp("features")
    path = write_lines(root / "clean.ndjson.gz", envelopes(900, seed=3))
    backfill([path], root / "features")
    return load_dataset(root / "features")


def training_set(features: pd.DataFrame, embargo_s: float = 360.0) -> pd.DataFrame:
    """Labelled rows split by time: the first 60% train, test after the embargo."""
    frame = features[features["fwd_vol_60"].notna()].copy()
    cut = frame["ts"].min() + 0.6 * (frame["ts"].max() - frame["ts"].min())
    train = frame[frame["ts"] <= cut].assign(split="train")
    test = frame[frame["ts"] > cut + pd.Timedelta(seconds=embargo_s)].assign(split="test")
    spec = LabelSpec(quantile=0.8).fit(train)
    out = pd.concat([train, test], ignore_index=True)
    out["label"] = spec.apply(out)
    return out


def failed(report) -> set[str]:
    return {o.column for o in report.failures}


def test_clean_recording_passes_every_raw_expectation(recording):
    report = validate_raw_batch(read_raw_batch([recording("clean.ndjson")]))
    assert report.success, report.table()
    assert report.rows == 300
    names = {o.expectation for o in report.outcomes}
    assert {
        "expect_column_type_to_be",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_null",
    } <= names


def test_raw_failures_name_column_and_record(recording, envelopes):
    lines = envelopes(50)
    lines[10]["events"][0]["tickers"][0]["best_bid"] = "99999999"  # crossed
    lines[20]["events"][0]["tickers"][0]["price"] = "12e"  # not a number
    path = recording("broken.ndjson", lines)
    report = validate_raw_batch(read_raw_batch([path]))
    assert not report.success
    assert failed(report) == {"best_ask,best_bid", "unparseable", "price", "refused"}
    crossed = next(o for o in report.failures if o.column == "best_ask,best_bid")
    assert crossed.unexpected_count == 1
    assert crossed.sample[0].startswith("BTC-USD|broken.ndjson|10|0")
    unparseable = next(o for o in report.failures if o.column == "unparseable")
    assert unparseable.sample == ["BTC-USD|broken.ndjson|20|0: price='12e'"]
    refused = next(o for o in report.failures if o.column == "refused")
    assert [s.split(":", 1)[0] for s in refused.sample] == [
        "BTC-USD|broken.ndjson|10|0",
        "BTC-USD|broken.ndjson|20|0",
    ]
    assert "crossed book" in refused.sample[0] and "'price'" in refused.sample[1]
    assert json.loads(report.to_json())["failed"] == 4


def test_known_products_are_configurable(recording, envelopes):
    path = recording("eth.ndjson", envelopes(20, product="ETH-USD"))
    batch = read_raw_batch([path])
    assert validate_raw_batch(batch).success
    only_btc = validate_raw_batch(batch, ContractOptions(products=("BTC-USD",)))
    assert failed(only_btc) == {"product_id"}


def test_every_feature_has_a_rule_and_families_extend():
    assert [n for n in FEATURE_NAMES if rule_for(n) is None] == []
    assert rule_for("realized_vol_900") == rule_for("realized_vol_60")
    assert rule_for("imbalance_mean_5").min_value == -1.0
    assert rule_for("brand_new_feature") is None
    assert all(rule.max_null_fraction <= 1.0 for _pattern, rule in FEATURE_RULES)


def test_backfilled_features_pass(features):
    report = validate_frame("features", features)
    assert report.success, report.table()
    assert report.notes == []


def test_unmatched_feature_is_reported_unchecked_but_still_finite(features):
    options = ContractOptions(feature_names=(*FEATURE_NAMES, "brand_new_feature"))
    frame = features.assign(brand_new_feature=1.0)
    report = validate_frame("features", frame, options)
    assert report.success and report.notes == [
        "brand_new_feature: no rule matches; checked for infinities only"
    ]
    frame.loc[3, "brand_new_feature"] = np.inf
    assert failed(validate_frame("features", frame, options)) == {"brand_new_feature"}


@pytest.mark.parametrize(
    ("breakage", "column"),
    [
        ("negative_vol", "realized_vol_60"),
        ("imbalance_out_of_range", "imbalance"),
        ("infinite_spread", "spread_bps"),
        ("mostly_nan", "ret_mean"),
        ("old_feature_set", "feature_set_version"),
        ("time_goes_back", "ts_step_s"),
        ("duplicate_key", "product_id,ts"),
        ("naive_ts", "ts"),
        ("missing_column", None),
    ],
)
def test_broken_features_fail_on_their_column(features, breakage, column):
    frame = features.copy()
    if breakage == "negative_vol":
        frame.loc[5, "realized_vol_60"] = -1e-4
    elif breakage == "imbalance_out_of_range":
        frame.loc[5, "imbalance"] = 1.5
    elif breakage == "infinite_spread":
        frame.loc[5, "spread_bps"] = np.inf
    elif breakage == "mostly_nan":
        frame.loc[: len(frame) // 5, "ret_mean"] = np.nan
    elif breakage == "old_feature_set":
        frame["feature_set_version"] = "fs0"
    elif breakage == "time_goes_back":
        frame.loc[[10, 11], "ts"] = frame.loc[[11, 10], "ts"].to_numpy()
    elif breakage == "duplicate_key":
        frame = pd.concat([frame, frame.iloc[[7]]], ignore_index=True)
    elif breakage == "naive_ts":
        frame["ts"] = frame["ts"].dt.tz_localize(None)
    elif breakage == "missing_column":
        frame = frame.drop(columns=["tick_intensity_30"])
    report = validate_frame("features", frame)
    assert not report.success
    assert column in failed(report), report.table()


def test_training_set_passes_and_leaks_fail(features):
    good = training_set(features)
    report = validate_frame("training", good)
    assert report.success, report.table()

    leaky = training_set(features, embargo_s=60.0)  # test starts 60 s after train: too close
    assert failed(validate_frame("training", leaky)) == {"split_gap_s"}
    assert validate_frame("training", leaky, ContractOptions(embargo_s=30.0)).success

    all_spikes = good.assign(label=1.0)
    assert failed(validate_frame("training", all_spikes)) == {"label"}

    not_binary = good.copy()
    not_binary.loc[0, "label"] = 2.0
    assert failed(validate_frame("training", not_binary)) == {"label"}

    duplicated = pd.concat([good, good.iloc[[3]]], ignore_index=True)
    assert "product_id,ts" in failed(validate_frame("training", duplicated))


def test_walk_forward_fold_ids(features):
    frame = training_set(features).drop(columns="split")
    frame["split"] = np.arange(len(frame)) * 3 // len(frame)  # three time-ordered blocks
    assert validate_frame("training", frame).success
    frame.loc[len(frame) - 1, "split"] = 0  # the last row put back in the first block
    assert failed(validate_frame("training", frame)) == {"split_gap_s"}


def test_validate_data_command_exit_codes(recording, envelopes, features, tmp_path, capsys):
    clean = recording("clean.ndjson")
    assert cli(["validate-data", "raw", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "raw_ticks: 300 rows" in out and "PASSED" in out and "FAIL " not in out

    lines = envelopes(40)
    lines[5]["events"][0]["tickers"][0]["price"] = "-1"
    bad = recording("bad.ndjson", lines)
    report_path = tmp_path / "report.json"
    assert cli(["validate-data", "raw", str(bad), "--report", str(report_path)]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("FAIL") and " price " in line for line in out.splitlines())
    assert json.loads(report_path.read_text())["success"] is False

    assert cli(["validate-data", "raw", str(tmp_path / "absent.ndjson")]) == 2
    assert "cannot read input" in capsys.readouterr().err
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    assert cli(["validate-data", "features", str(garbage)]) == 2

    table = tmp_path / "training.parquet"
    training_set(features).to_parquet(table)
    assert cli(["validate-data", "training", str(table), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["suite"] == "training_set"
    assert cli(["validate-data", "training", str(table), "--label-rate", "0.5", "0.9"]) == 1


def test_missing_quantity_is_nan_not_zero_in_the_raw_frame(recording, envelopes):
    lines = envelopes(20)
    del lines[3]["events"][0]["tickers"][0]["best_bid_quantity"]
    batch = read_raw_batch([recording("noqty.ndjson", lines)])
    assert math.isnan(batch.frame.loc[3, "best_bid_quantity"])
    assert validate_raw_batch(batch).success


def test_importing_contracts_does_not_import_great_expectations():
    code = (
        "import sys, data_contracts.gate, tasks.commands.validate_data; "
        "print('great_expectations' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
