"""Bad command-line input gets one clear line and a non-zero exit, never a traceback (issues 9
and 15): exit 2 for a usage error, 1 for a failure (a full disk, a read-only data dir).

Commands run in process through the console script's entry point; none of these needs a broker
or a server: each is refused before anything is started, or fails writing to a small tmpfs.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from tasks.cli import main
from tasks.settings import get_settings

ENVELOPE = {
    "channel": "ticker",
    "timestamp": "2026-01-01T00:00:00.000000Z",
    "sequence_num": 0,
    "events": [{"type": "update", "tickers": [{"product_id": "BTC-USD", "price": "1"}]}],
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "one.ndjson"
    path.write_text(json.dumps(ENVELOPE) + "\n")
    return path


def run(argv: list[str], capsys, caplog) -> tuple[int, str]:
    """Exit code and everything the command said (stdout, stderr, log)."""
    caplog.set_level(logging.INFO)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refusing an argument
        code = exc.code
    out, err = capsys.readouterr()
    return code, out + err + caplog.text


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["exchange", "--port", "70000"], "port is 1-65535"),
        (["capture", "--metrics-port", "70000"], "port is 1-65535"),
        (["featurize", "--metrics-port", "-1"], "port is 1-65535"),
        (["simulate", "--minutes", "nan", "--out", "x"], "finite number above 0"),
        (["simulate", "--minutes", "inf", "--out", "x"], "finite number above 0"),
        (["featurize", "--batch-size", "0"], "at least 1"),
        (["featurize", "--batch-size", "-5"], "at least 1"),
        (["capture", "--url", "nowhere", "--minutes", "1"], "not a ws:// or wss:// URL"),
        (["backfill", "--max-gap-s", "nan"], "finite number"),
        (["score", "--metrics-port", "70000"], "port is 1-65535"),
        (["score", "--max-idle-seconds", "-1"], "finite number above 0"),
        (["score", "--batch-size", "0"], "at least 1"),
        (["drift", "--minutes", "0"], "finite number above 0"),
        (["train", "--data", "x", "--max-rows", "-1"], "--max-rows: must be 0 (no cap) or more"),
        (["train", "--data", "x", "--max-rows-per-product", "-1"], "must be 0 (no cap) or more"),
    ],
)
def test_arguments_out_of_range_are_refused_by_name(argv, said, capsys, caplog):
    code, text = run(argv, capsys, caplog)
    assert code == 2
    assert said in text


@pytest.mark.parametrize("command", ["exchange", "capture", "featurize"])
def test_a_port_in_use_is_named(command, busy_port, capsys, caplog):
    flag = "--port" if command == "exchange" else "--metrics-port"
    code, text = run([command, flag, str(busy_port)], capsys, caplog)
    assert code == 1
    assert f"127.0.0.1:{busy_port} is already in use" in text


def test_simulate_into_an_existing_file(tmp_path, capsys, caplog):
    out = tmp_path / "taken"
    out.write_text("keep me")
    code, text = run(["simulate", "--minutes", "1", "--out", str(out)], capsys, caplog)
    assert code == 2 and "is a file" in text
    assert out.read_text() == "keep me"


def test_validate_data_report_into_a_directory(recording, tmp_path, capsys, caplog):
    code, text = run(
        ["validate-data", "raw", str(recording), "--report", str(tmp_path)], capsys, caplog
    )
    assert code == 2 and "is a directory" in text


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_data_is_named(command, tmp_path, capsys, caplog):
    missing = tmp_path / "nowhere.parquet"
    code, text = run([command, "--data", str(missing)], capsys, caplog)
    assert code == 2 and f"no such data: {missing}" in text


@pytest.mark.parametrize("uri", ["models:/nope@champion", "models:/nope/3", "runs:/0123abcd/model"])
def test_evaluate_a_model_that_does_not_exist(uri, recording, capsys, caplog):
    code, text = run(["evaluate", "--model-uri", uri, "--data", str(recording)], capsys, caplog)
    assert code == 2 and f"no model at {uri}" in text


def test_replay_of_nothing_says_so(tmp_path, capsys, caplog):
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a recording")
    for target in (empty, folder):
        code, text = run(["replay", str(target)], capsys, caplog)
        assert code == 2
        assert "every recording is empty" in text or "no recordings" in text


def test_a_poison_line_is_a_counted_bad_line_for_backfill_and_validate_data(
    tmp_path, capsys, caplog
):
    """Before, a deeply nested line raised a RecursionError through both commands."""
    path = tmp_path / "poison.ndjson"
    good = [
        dict(ENVELOPE, sequence_num=i, timestamp=f"2026-01-01T00:00:{i:02d}.000000Z")
        for i in range(3)
    ]
    lines = [json.dumps(good[0]), "[" * 100_000 + "]" * 100_000, *map(json.dumps, good[1:])]
    path.write_text("\n".join(lines) + "\n")
    code, text = run(["validate-data", "raw", str(path), "--json"], capsys, caplog)
    assert code == 1  # 1 bad line in 4 breaks the 1 % limit: reported, not a crash
    report = json.loads(text[: text.rindex("}") + 1])
    (check,) = [o for o in report["outcomes"] if o["expectation"] == "bad_line_fraction_at_most"]
    assert check["unexpected_count"] == 1 and "nested too deeply" in check["sample"][0]
    out = tmp_path / "out.parquet"
    code, text = run(["backfill", str(path), "--out", str(out), "--skip-contracts"], capsys, caplog)
    assert code == 0 and out.exists()
    assert '"bad_lines": 1' in text


@pytest.fixture
def simulated(tmp_path) -> Path:
    """Ten simulated minutes of two products, as recordings."""
    out = tmp_path / "sim"
    assert main(["simulate", "--minutes", "10", "--out", str(out)]) == 0
    return out


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("out", "said"),
    [
        ("afile", "afile is a file, not a folder"),
        ("afile/out.parquet", "afile is a file, not a folder"),
        ("folder.parquet", "folder.parquet is a directory, not a file"),
    ],
)
def test_backfill_out_that_cannot_be_written_is_named(
    out, said, recording, tmp_path, capsys, caplog
):
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "folder.parquet").mkdir()
    target = tmp_path / out
    code, text = run(["backfill", str(recording), "--out", str(target)], capsys, caplog)
    assert code == 2
    assert f"--out {target}: {tmp_path / said}" in text
    _no_traceback(text)
    assert (tmp_path / "afile").read_text() == "keep me"
    assert list((tmp_path / "folder.parquet").iterdir()) == []


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_data_that_is_not_parquet(command, tmp_path, capsys, caplog):
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    code, text = run([command, "--data", str(junk)], capsys, caplog)
    assert code == 2
    assert f"{junk} is neither a Parquet file nor a recording" in text
    _no_traceback(text)


def test_drift_on_a_missing_path(tmp_path, capsys, caplog):
    missing = tmp_path / "nowhere"
    code, text = run(["drift", "--current", str(missing)], capsys, caplog)
    assert code == 2 and f"no such data: {missing}" in text


def test_drift_against_a_model_that_does_not_exist(recording, capsys, caplog):
    argv = ["drift", "--current", str(recording), "--model-uri", "models:/nope/1", "--no-push"]
    code, text = run(argv, capsys, caplog)
    assert code == 2
    assert "no model at models:/nope/1" in text
    _no_traceback(text)


def _on(disk, monkeypatch) -> Path:
    data = disk.path / "data"
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(data))
    get_settings.cache_clear()
    return data


def _hidden_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name != ".write.lock" and p.name != ".ballast"]


def _argv(command: str, simulated: Path) -> list[str]:
    """``command`` on the simulated recordings, writing into the data dir."""
    if command == "backfill":
        return ["backfill", str(simulated), "--skip-contracts"]
    if command == "train":
        return ["train", "--data", str(simulated), "--skip-contracts"]
    features = simulated.parent / "features.parquet"  # off the small disk
    assert main(["backfill", str(simulated), "--out", str(features), "--skip-contracts"]) == 0
    return ["drift", "--current", str(features), "--reference", str(features), "--no-push"]


@pytest.mark.parametrize(
    ("command", "target"), [("backfill", "features"), ("train", "cache/backfill/")]
)
def test_a_full_disk(command, target, simulated, small_disk, monkeypatch, capsys, caplog):
    data = _on(small_disk, monkeypatch)
    small_disk.fill(leave_bytes=64 * 1024)
    code, text = run(_argv(command, simulated), capsys, caplog)
    assert code == 1
    assert f"cannot write {data / target}" in text and "No space left on device" in text
    _no_traceback(text)
    assert _hidden_leftovers(small_disk.path) == []
    assert list(data.rglob("*.parquet")) == []


@pytest.mark.parametrize("command", ["backfill", "train", "drift"])
def test_a_read_only_data_dir(command, simulated, small_disk, monkeypatch, capsys, caplog):
    data = _on(small_disk, monkeypatch)
    argv = _argv(command, simulated)
    small_disk.read_only()
    code, text = run(argv, capsys, caplog)
    assert code == 1
    assert f"{data}" in text and "Read-only file system" in text
    _no_traceback(text)


@pytest.mark.slow  # an Evidently report and a local MLflow store: about 50 s here
def test_drift_on_a_full_disk_leaves_no_partial_report(
    simulated, small_disk, monkeypatch, capsys, caplog
):
    data = _on(small_disk, monkeypatch)
    argv = _argv("drift", simulated)
    small_disk.fill(leave_bytes=1024 * 1024)  # room for MLflow's store, not for Evidently's viewer
    code, text = run([*argv, "--no-live"], capsys, caplog)
    assert code == 1
    assert f"cannot write {data / 'reports' / 'drift'}/" in text
    assert "No space left on device" in text
    _no_traceback(text)
    assert [p for p in small_disk.path.rglob("*.partial")] == []
