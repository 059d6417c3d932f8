"""The market simulator: the exchange format, reproducibility, the stylized facts it promises."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from itertools import islice

import numpy as np
import pytest

from tasks.cli import main as cli_main
from tasks.core.messages import Tick, parse_envelope, ticks_from_envelope, to_tick
from tasks.io.recordings import BadLine, expand_inputs, read_ticks
from tasks.sim.market_stats import abs_return_acf, facts_by_product, statistics_grid
from tasks.sim.simulator import (
    DEFAULT_START,
    MarketSimulator,
    ModelParams,
    day_regimes,
    regime_ticks,
    simulate_envelopes,
)
from tasks.sim.writer import recording_name, write_recordings

TICKER_KEYS = {
    "type", "product_id", "price", "volume_24_h", "low_24_h", "high_24_h", "low_52_w",
    "high_52_w", "price_percent_chg_24_h", "best_bid", "best_ask", "best_bid_quantity",
    "best_ask_quantity",
}  # fmt: skip


def _ticks(envelopes) -> list[Tick]:
    out = []
    for message in envelopes:
        env = parse_envelope(message)
        for raw in ticks_from_envelope(env, received_at=env.timestamp, source="sim"):
            out.append(to_tick(raw))
    return out


@pytest.fixture(scope="module")
def hour_by_product() -> dict[str, list[Tick]]:
    """60 simulated minutes of both default products, seed 0, through the envelope parser."""
    by_product: dict[str, list[Tick]] = defaultdict(list)
    for tick in _ticks(simulate_envelopes(seed=0, minutes=60)):
        by_product[tick.product_id].append(tick)
    return dict(by_product)


@pytest.fixture(scope="module")
def hour_facts(hour_by_product) -> dict[str, dict[str, float]]:
    return {p: facts_by_product(t)[p] for p, t in hour_by_product.items()}


def test_ticker_objects_have_the_exchange_shape_and_time_order():
    items = list(islice(MarketSimulator(seed=5).ticks(), 2000))
    times = [t for t, _ in items]
    assert times == sorted(times)
    assert {ticker["product_id"] for _, ticker in items} == {"BTC-USD", "ETH-USD"}
    for _, ticker in items:
        assert set(ticker) == TICKER_KEYS
        assert all(isinstance(v, str) for v in ticker.values())
        assert ticker["type"] == "ticker"
        assert float(ticker["best_bid"]) < float(ticker["best_ask"])
    btc = [float(t["price"]) for _, t in items if t["product_id"] == "BTC-USD"]
    eth = [float(t["price"]) for _, t in items if t["product_id"] == "ETH-USD"]
    assert min(btc) > 60_000 and max(btc) < 120_000
    assert min(eth) > 2_000 and max(eth) < 4_500


def test_envelopes_snapshots_first_heartbeats_each_second_one_sequence():
    envelopes = list(simulate_envelopes(("BTC-USD", "ETH-USD"), seed=1, minutes=2))
    assert [e["sequence_num"] for e in envelopes] == list(range(len(envelopes)))
    first_two = envelopes[:2]
    assert [e["events"][0]["type"] for e in first_two] == ["snapshot", "snapshot"]
    assert [e["events"][0]["tickers"][0]["product_id"] for e in first_two] == ["BTC-USD", "ETH-USD"]
    updates = [e for e in envelopes[2:] if e["channel"] == "ticker"]
    assert updates and all(e["events"][0]["type"] == "update" for e in updates)
    beats = [e for e in envelopes if e["channel"] == "heartbeats"]
    assert [b["events"][0]["heartbeat_counter"] for b in beats] == list(range(1, 120))
    assert beats[0]["timestamp"] == "2026-01-01T00:00:01.000000Z"
    assert beats[0]["events"][0]["current_time"].startswith(
        "2026-01-01 00:00:01.000000000 +0000 UTC"
    )
    stamps = [e["timestamp"] for e in envelopes]
    assert stamps == sorted(stamps)
    assert stamps[-1] < "2026-01-01T00:02:00"
    assert set(envelopes[0]) == {"channel", "client_id", "timestamp", "sequence_num", "events"}


def test_same_seed_gives_byte_identical_files_other_seed_differs(tmp_path):
    a = write_recordings(tmp_path / "a", seed=7, minutes=3)
    b = write_recordings(tmp_path / "b", seed=7, minutes=3)
    c = write_recordings(tmp_path / "c", seed=8, minutes=3)
    assert [p.name for p in a.files] == ["SIM_20260101_000000_seed7.ndjson.gz"]
    assert a.files[0].read_bytes() == b.files[0].read_bytes()
    assert gzip.decompress(a.files[0].read_bytes()) != gzip.decompress(c.files[0].read_bytes())


def test_products_do_not_change_each_others_paths():
    alone = list(islice(MarketSimulator(["ETH-USD"], seed=3).ticks(), 300))
    mixed = [
        x for x in islice(MarketSimulator(seed=3).ticks(), 800) if x[1]["product_id"] == "ETH-USD"
    ]
    assert alone[:200] == mixed[:200]


def test_files_round_trip_through_read_ticks_and_to_tick(tmp_path):
    summary = write_recordings(
        tmp_path, products=["BTC-USD", "ETH-USD", "SOL-USD"], seed=2, minutes=2.5, file_seconds=60
    )
    assert [p.name for p in summary.files] == [
        recording_name(DEFAULT_START + 60 * i, 2) for i in range(3)
    ]
    assert not list(tmp_path.glob("*.part"))
    items = list(read_ticks(expand_inputs([tmp_path])))
    assert not [i for i in items if isinstance(i, BadLine)]
    ticks = [to_tick(raw) for raw in items]
    per_product = defaultdict(int)
    for tick in ticks:
        per_product[tick.product_id] += 1
        assert 0 < tick.best_bid < tick.best_ask and tick.price > 0
        assert tick.best_bid_quantity > 0 and tick.best_ask_quantity > 0
    assert dict(per_product) == dict(summary.tickers)
    assert summary.heartbeats == 149
    # one connection rotated over files: sequence numbers run on across them
    per_file = [
        [json.loads(line) for line in gzip.decompress(p.read_bytes()).splitlines()]
        for p in summary.files
    ]
    sequence = [e["sequence_num"] for lines in per_file for e in lines]
    assert sequence == list(range(summary.messages))
    assert per_file[1][0]["timestamp"] >= "2026-01-01T00:01:00"
    assert per_file[0][-1]["timestamp"] < "2026-01-01T00:01:00"


def test_simulate_command_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "sim"
    code = cli_main(["simulate", "--minutes", "1", "--seed", "4", "--products", "BTC-USD",
                     "--start", "2026-02-03T04:05:06Z", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert [p.name for p in out.iterdir()] == ["SIM_20260203_040506_seed4.ndjson.gz"]
    report = capsys.readouterr().out
    assert "tickers BTC-USD:" in report and "2026-02-03T04:05:06.000000Z" in report
    with pytest.raises(SystemExit):
        cli_main(["simulate", "--minutes", "1", "--start", "yesterday", "--out", str(out)])


def test_volatility_clusters_up_to_a_minute(hour_by_product):
    for product, ticks in hour_by_product.items():
        acf = abs_return_acf(statistics_grid(ticks), range(1, 61))
        decades = [np.mean([acf[lag] for lag in range(d, d + 10)]) for d in range(1, 61, 10)]
        assert min(decades) > 0.05, (product, decades)


def test_heavy_tails(hour_facts):
    for product, facts in hour_facts.items():
        assert facts["ret_1s_kurtosis"] > 6, product


def test_tick_intensity_and_spread_rise_with_volatility(hour_facts):
    for product, facts in hour_facts.items():
        assert facts["corr_minute_ticks_vol"] > 0.4, product
        assert facts["corr_minute_spread_vol"] > 0.2, product
        assert facts["spread_high_vol_minutes_bps"] > 1.2 * facts["spread_other_minutes_bps"]


def test_spikes_partly_predictable_beyond_persistence(hour_facts):
    """Tick intensity tells about the next minute's volatility what this minute's does not,
    and the order-book imbalance leans towards the next move."""
    for product, facts in hour_facts.items():
        assert facts["partial_corr_ticks_next_vol"] > 0.15, product
        assert facts["corr_imbalance_next_ret"] > 0.05, product


def test_simulator_module_is_pure():
    code = (
        "import sys, tasks.sim.simulator, tasks.sim.market_stats; "
        "bad = {'confluent_kafka', 'websockets', 'prefect', 'mlflow', 'requests', 'httpx', "
        "'socket', 'asyncio'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_precursors_are_what_makes_spikes_foreseeable(hour_facts):
    """Switching the precursors off (bursts then come unannounced) takes most of the lead away."""
    unannounced = replace(
        ModelParams(), intensity_precursor=0.0, spread_enter_precursor=0.0, flow_burst_push=0.0
    )
    by_product: dict[str, list[Tick]] = defaultdict(list)
    for tick in _ticks(simulate_envelopes(seed=0, minutes=60, params=unannounced)):
        by_product[tick.product_id].append(tick)
    without = np.mean(
        [facts_by_product(t)[p]["partial_corr_ticks_next_vol"] for p, t in by_product.items()]
    )
    with_ = np.mean([f["partial_corr_ticks_next_vol"] for f in hour_facts.values()])
    assert with_ > without + 0.1, (with_, without)


@pytest.mark.shared_data
def test_scale_matches_the_real_recordings(shared_recordings, hour_facts):
    real_ticks = [to_tick(r) for r in read_ticks(shared_recordings) if not isinstance(r, BadLine)]
    real = facts_by_product(real_ticks)["BTC-USD"]
    sim = hour_facts["BTC-USD"]
    for name in ("ticks_per_min_median", "minute_vol_median_bps", "ret_1s_std_bps"):
        ratio = sim[name] / real[name]
        assert 1 / 3 < ratio < 3, (name, sim[name], real[name])
    assert abs(sim["spread_median_bps"] - real["spread_median_bps"]) < 0.01


def test_each_day_of_a_product_has_its_own_seeded_regime():
    levels = day_regimes("SOL-USD", seed=3, days=7)
    assert np.array_equal(levels, day_regimes("SOL-USD", seed=3, days=7))
    assert not np.array_equal(levels, day_regimes("SOL-USD", seed=4, days=7))
    assert not np.array_equal(levels, day_regimes("XRP-USD", seed=3, days=7))
    assert levels.max() / levels.min() > 1.5  # days differ as much as real ones do


def test_market_day_changes_volatility_at_midnight_and_the_price_runs_on():
    levels = day_regimes("BTC-USD", seed=2, days=2)
    hours_us = 6 * 3_600_000_000
    midnight = round(DEFAULT_START * 1e6) + 86_400_000_000
    before: dict[int, float] = {}  # last mid of each second, six hours either side of midnight
    after: dict[int, float] = {}
    for us, ticker in regime_ticks("BTC-USD", seed=2, days=2):
        if us >= midnight + hours_us:
            break
        side = before if us < midnight else after
        if us >= midnight - hours_us:
            side[us // 1_000_000] = float(ticker["best_bid"]) + float(ticker["best_ask"])

    def realized_variance(mids: dict[int, float]) -> float:
        return float(np.sum(np.diff(np.log(list(mids.values()))) ** 2))

    vol_ratio = math.sqrt(realized_variance(after) / realized_variance(before))
    expected = levels[1] / levels[0]
    assert abs(math.log(vol_ratio) - math.log(expected)) < abs(math.log(expected)) / 2
    assert abs(math.log(next(iter(after.values())) / list(before.values())[-1])) < 1e-3


@pytest.mark.slow
def test_simulate_days_writes_the_archive_layout(tmp_path, capsys):
    assert cli_main(["simulate", "--days", "1", "--products", "1", "--out", str(tmp_path)]) == 0
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.ndjson.gz"))
    assert len(files) == 24
    assert files[0] == "BTC-USD/BTC-USD_20260101_000000_seed0.ndjson.gz"
    ticks = [t for t in read_ticks(expand_inputs([tmp_path])) if not isinstance(t, BadLine)]
    assert {t.product_id for t in ticks} == {"BTC-USD"}
    assert f"tickers BTC-USD: {len(ticks)}" in capsys.readouterr().out
