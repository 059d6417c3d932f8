"""A clean recording corrupted in many ways: every corruption is caught by the raw contract (the
file is set aside with its report) or by a counted rejection of the batch path (the line or tick
is dropped and counted), and no corrupted tick reaches the training set; the clean ticks do.

One directory holds the clean recording and one corrupted copy per corruption, each an hour
apart like real recording files. The gate (``check_and_admit``) runs over the directory once, the
backfill runs on what it admitted, and each corruption is checked on that shared outcome.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.gate import Admission, check_and_admit
from tasks.core.messages import MessageError, to_tick
from tasks.io.feature_store import load_dataset
from tasks.io.recordings import BadLine, open_text, read_ticks
from tasks.stages.backfill import BackfillStats, backfill, load_ticks

TARGET = 120  # the corrupted envelope: a ticker in the middle of the recording
CLEAN = "BTC-USD_clean.ndjson"


def ticker(envelope: dict) -> dict:
    return envelope["events"][0]["tickers"][0]


Mutation = Callable[[list, int], None]  # corrupts the envelope at an index of the lines, in place


def set_ticker(name: str, value: str) -> Mutation:
    def mutate(lines: list, at: int) -> None:
        ticker(lines[at])[name] = value

    return mutate


def drop_ticker(name: str) -> Mutation:
    def mutate(lines: list, at: int) -> None:
        del ticker(lines[at])[name]

    return mutate


def drop_envelope(name: str) -> Mutation:
    def mutate(lines: list, at: int) -> None:
        del lines[at][name]

    return mutate


def crossed_book(lines: list, at: int) -> None:
    t = ticker(lines[at])
    t["best_bid"] = f"{float(t['best_ask']) + 10:.2f}"


def duplicate_sequence(lines: list, at: int) -> None:
    lines.insert(at + 1, copy.deepcopy(lines[at]))


def out_of_order_sequence(lines: list, at: int) -> None:
    lines[at], lines[at + 1] = lines[at + 1], lines[at]


def future_timestamp(lines: list, at: int) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    lines[at]["timestamp"] = later.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def past_timestamp(lines: list, at: int) -> None:
    lines[at]["timestamp"] = "2019-03-01T00:00:00.000000Z"  # years before its neighbours


def unparseable_timestamp(lines: list, at: int) -> None:
    lines[at]["timestamp"] = "06/12/2025 05:47:12"


def set_book(value: str) -> Mutation:
    def mutate(lines: list, at: int) -> None:
        ticker(lines[at]).update(best_bid=value, best_ask=value)

    return mutate


def set_envelope(name: str, value) -> Mutation:
    def mutate(lines: list, at: int) -> None:
        lines[at][name] = value

    return mutate


def offset_timestamp(lines: list, at: int) -> None:
    """The same instant written with a +05:00 offset: the engine takes UTC only."""
    moment = datetime.strptime(lines[at]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    lines[at]["timestamp"] = (moment + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.%f+05:00")


def truncated_json_line(lines: list, at: int) -> None:
    lines[at] = json.dumps(lines[at])[:80]


@dataclass(frozen=True)
class Corruption:
    name: str
    mutate: Mutation
    contract: frozenset[str] = frozenset()  # columns of the failed expectations; empty: passes
    rejected: str | None = None  # to_tick's MessageError mentions this
    bad_line: bool = False  # read_ticks yields a BadLine for it


def corruption(name, mutate, contract=(), rejected=None, bad_line=False) -> Corruption:
    return Corruption(name, mutate, frozenset(contract), rejected, bad_line)


CORRUPTIONS = [
    corruption("negative_price", set_ticker("price", "-89565.12"), {"price", "refused"}, "price"),
    corruption("zero_price", set_ticker("price", "0"), {"price", "refused"}, "price"),
    corruption("crossed_book", crossed_book, {"best_ask,best_bid", "refused"}, "crossed"),
    corruption("duplicate_sequence", duplicate_sequence, {"seq_delta", "record_id"}),
    corruption("out_of_order_sequence", out_of_order_sequence, {"seq_delta"}),
    corruption("missing_sequence", drop_envelope("sequence_num"), {"sequence_num", "seq_delta"}),
    corruption(
        "unparseable_timestamp",
        unparseable_timestamp,
        {"timestamp", "unparseable", "refused"},
        "timestamp",
    ),
    # far from the neighbouring lines' times, so far from its receive time: refused by the
    # contract and, in both the batch and the stream, by to_tick
    corruption(
        "future_timestamp",
        future_timestamp,
        {"timestamp", "receive_lead_s", "refused"},
        "event time",
    ),
    corruption("past_timestamp", past_timestamp, {"receive_lead_s", "refused"}, "event time"),
    corruption("missing_price", drop_ticker("price"), {"price", "refused"}, "price"),
    corruption(
        "non_numeric_price",
        set_ticker("price", "89,565.12"),
        {"price", "unparseable", "refused"},
        "price",
    ),
    corruption(
        "nan_price", set_ticker("price", "NaN"), {"price", "unparseable", "refused"}, "price"
    ),
    corruption(
        "non_numeric_quantity",
        set_ticker("best_ask_quantity", "lots"),
        {"unparseable", "refused"},
        "best_ask_quantity",
    ),
    corruption(
        "negative_quantity",
        set_ticker("best_bid_quantity", "-0.5"),
        {"best_bid_quantity", "refused"},
        "quantity",
    ),
    corruption("unknown_product", set_ticker("product_id", "DOGE-EUR"), {"product_id"}),
    corruption("truncated_json_line", truncated_json_line, bad_line=True),
    corruption("missing_envelope_timestamp", drop_envelope("timestamp"), bad_line=True),
    corruption("ticker_without_product", drop_ticker("product_id"), bad_line=True),
    corruption("missing_best_bid_quantity", drop_ticker("best_bid_quantity")),  # legal: NaN
    # issue 15: extremes the contract passed (or crashed on) while the engine died or refused
    corruption("huge_book", set_book("1e308"), {"best_bid", "best_ask", "refused"}, "best_bid"),
    corruption(
        "subnormal_book", set_book("1e-320"), {"best_bid", "best_ask", "refused"}, "best_bid"
    ),
    corruption(
        "offset_timestamp", offset_timestamp, {"timestamp", "unparseable", "refused"}, "timestamp"
    ),
    corruption("dotdot_product", set_ticker("product_id", ".."), bad_line=True),
    corruption("long_product", set_ticker("product_id", "X" * 10_000), bad_line=True),
    corruption("sequence_2_63", set_envelope("sequence_num", 2**63), bad_line=True),
    corruption("sequence_jump", set_envelope("sequence_num", 10**15), {"seq_delta"}),
]
BY_NAME = {c.name: c for c in CORRUPTIONS}


@dataclass
class Outcome:
    root: Path
    quarantine_dir: Path
    admission: Admission
    training: pd.DataFrame  # the backfill of what was admitted

    def file(self, name: str) -> Path:
        return self.root / f"BTC-USD_{name}.ndjson"

    def target_id(self, name: str) -> str:
        return f"BTC-USD|{self.file(name).name}|{TARGET}|0"


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, envelopes, write_lines) -> Outcome:
    root = tmp_path_factory.mktemp("corruptions")
    recordings = root / "recordings"
    write_lines(recordings / CLEAN, envelopes(300, seed=7))
    for hour, item in enumerate(CORRUPTIONS, start=1):
        lines = shift(envelopes(300, seed=7), timedelta(hours=hour))
        assert lines[TARGET]["channel"] == "ticker"
        item.mutate(lines, TARGET)
        write_lines(recordings / f"BTC-USD_{item.name}.ndjson", lines)
    quarantine_dir = root / "quarantine"
    admission = check_and_admit([recordings], quarantine_dir)
    backfill(admission.admitted, root / "training")
    training = load_dataset(root / "training")
    return Outcome(recordings, quarantine_dir, admission, training)


def shift(lines: list[dict], delta: timedelta) -> list[dict]:
    for envelope in lines:
        moment = datetime.strptime(envelope["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        envelope["timestamp"] = (moment + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return lines


def test_at_least_ten_corruptions_and_the_clean_file_passes(outcome):
    assert len(CORRUPTIONS) >= 10
    clean = outcome.root / CLEAN
    assert clean in outcome.admission.admitted
    assert outcome.admission.reports[str(clean)].success


@pytest.mark.parametrize("name", list(BY_NAME))
def test_corruption_is_caught(outcome, name):
    item = BY_NAME[name]
    path = outcome.file(name)
    report = outcome.admission.reports[str(path)]

    # the raw contract: fails naming exactly the broken columns, or passes
    assert {o.column for o in report.failures} == set(item.contract), report.table()
    quarantined = {q.path: q for q in outcome.admission.quarantined}
    if item.contract:
        assert path not in outcome.admission.admitted
        where = quarantined[path].location
        assert where.parent == outcome.quarantine_dir
        assert (where / path.name).read_bytes() == path.read_bytes()
        saved = json.loads((where / "report.json").read_text())
        assert saved["success"] is False
        assert {o["column"] for o in saved["outcomes"] if not o["success"]} == set(item.contract)
    else:
        assert path in outcome.admission.admitted and path not in quarantined

    # the batch path: the corrupted tick is rejected by to_tick, or its line is a counted BadLine
    stats = BackfillStats()
    load_ticks([path], stats)
    assert stats.rejected == (1 if item.rejected else 0)
    assert stats.bad_lines == (1 if item.bad_line else 0)
    if item.rejected:
        (raw,) = [t for t in read_ticks([path]) if t.record_id == outcome.target_id(name)]
        with pytest.raises(MessageError, match=item.rejected):
            to_tick(raw)
    if item.bad_line:
        (bad,) = [b for b in read_ticks([path]) if isinstance(b, BadLine)]
        assert bad.lineno == TARGET + 1
    assert item.contract or item.rejected or item.bad_line or name == "missing_best_bid_quantity"


@pytest.mark.parametrize("name", list(BY_NAME))
def test_no_corrupted_tick_reaches_training(outcome, name):
    path = outcome.file(name)
    rows = outcome.training[outcome.training["source"] == path.name]
    target = outcome.target_id(name)
    if BY_NAME[name].contract:
        assert rows.empty  # the whole file was set aside
        return
    expected = admitted_ids(path)
    got = set(rows["record_id"])
    assert got <= expected
    assert len(expected - got) <= 1  # only the very last tick has no complete second after it
    if name == "missing_best_bid_quantity":
        (row,) = rows[rows["record_id"] == target].itertuples()
        assert math.isnan(row.imbalance)  # a missing input is NaN, never zero
        assert not math.isnan(row.imbalance_mean_30)
    else:
        assert target not in got and target not in expected


def admitted_ids(path: Path) -> set[str]:
    ids = set()
    for item in read_ticks([path]):
        if isinstance(item, BadLine):
            continue
        try:
            ids.add(to_tick(item).record_id)
        except MessageError:
            continue
    return ids


def test_clean_ticks_reach_training(outcome):
    clean = outcome.root / CLEAN
    got = set(outcome.training.loc[outcome.training["source"] == CLEAN, "record_id"])
    expected = admitted_ids(clean)
    assert len(expected) == 300 and got <= expected and len(expected - got) <= 1
    quarantined_sources = {q.path.name for q in outcome.admission.quarantined}
    assert quarantined_sources.isdisjoint(set(outcome.training["source"]))
    assert len(quarantined_sources) == sum(1 for c in CORRUPTIONS if c.contract)


def test_move_takes_a_failing_batch_out_of_the_input(tmp_path, envelopes, write_lines):
    lines = envelopes(60, seed=1)
    crossed_book(lines, 10)
    path = write_lines(tmp_path / "in" / "bad.ndjson", lines)
    admission = check_and_admit([path], tmp_path / "quarantine", move=True)
    assert admission.admitted == [] and not path.exists()
    (item,) = admission.quarantined
    assert (item.location / "bad.ndjson").exists() and (item.location / "report.json").exists()


def test_gate_skips_files_with_nothing_to_judge(tmp_path, envelopes, write_lines):
    """The raw archive's layout: product folders, and a control folder of non-ticker messages."""
    lines = envelopes(60, seed=2)
    heartbeats = [e for e in lines if e["channel"] == "heartbeats"]
    archive = tmp_path / "archive"
    ticks = write_lines(archive / "BTC-USD" / "BTC-USD_20251206_054535_c1.ndjson.gz", lines)
    quiet = write_lines(archive / "BTC-USD" / "BTC-USD_20251206_064535_c2.ndjson.gz", heartbeats)
    control = write_lines(
        archive / "_control" / "_control_20251206_054535_c1.ndjson.gz",
        [*heartbeats, '{"type":"error","message":"rate limited"}', "garbage"],
    )
    admission = check_and_admit([archive], tmp_path / "quarantine")
    assert admission.admitted == [ticks]
    assert sorted(admission.skipped) == sorted([quiet, control])
    assert admission.quarantined == [] and not (tmp_path / "quarantine").exists()


@pytest.mark.shared_data
def test_real_recording_corrupted(shared_recordings, tmp_path, write_lines):
    source = min(shared_recordings, key=lambda p: p.stat().st_size)
    lines = [json.loads(line) for line in read_lines(source)]
    index = next(i for i, e in enumerate(lines) if e.get("channel") == "ticker" and i > 20)
    inputs = tmp_path / "in"
    write_lines(inputs / "real_clean.ndjson", lines)
    names = ("negative_price", "crossed_book", "future_timestamp", "unknown_product")
    for name in names:
        broken = copy.deepcopy(lines)
        BY_NAME[name].mutate(broken, index)
        write_lines(inputs / f"real_{name}.ndjson", broken)
    admission = check_and_admit([inputs], tmp_path / "quarantine")
    assert admission.admitted == [inputs / "real_clean.ndjson"]
    assert {q.path.name for q in admission.quarantined} == {f"real_{n}.ndjson" for n in names}


def read_lines(path: Path) -> list[str]:
    with open_text(path) as fh:
        return [line for line in fh if line.strip()]
