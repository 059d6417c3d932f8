"""Cost of the data contracts: raw frame building, raw and feature suites, the per-file gate.

Runs on the real recordings in ../shared/data when present, else on 60 simulated minutes.
Prints one JSON object: ``uv run python benchmarks/bench_contracts.py``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"


def main() -> None:
    started = time.perf_counter()
    import great_expectations  # noqa: F401  (measured apart: every process pays it once)

    figures: dict[str, object] = {"ge_import_s": round(time.perf_counter() - started, 2)}
    from data_contracts.frames import read_raw_batch
    from data_contracts.gate import check_and_admit
    from data_contracts.validate import validate_frame, validate_raw_batch
    from tasks.io.feature_store import load_dataset
    from tasks.sim.writer import write_recordings
    from tasks.stages.backfill import backfill

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if SHARED.is_dir():
            inputs, figures["data"] = SHARED, "shared recordings"
        else:
            inputs, figures["data"] = work / "sim", "simulated, 60 min"
            write_recordings(inputs, minutes=60, file_seconds=600)

        validate_raw_batch(read_raw_batch([next(inputs.glob("*.ndjson*"))]))  # warm the context

        t = time.perf_counter()
        batch = read_raw_batch([inputs])
        figures["raw_frame_s"] = round(time.perf_counter() - t, 2)
        figures["raw_rows"] = len(batch.frame)
        t = time.perf_counter()
        report = validate_raw_batch(batch)
        seconds = time.perf_counter() - t
        figures["raw_suite_s"] = round(seconds, 2)
        figures["raw_rows_per_s"] = round(len(batch.frame) / seconds)
        figures["raw_passed"] = report.success

        t = time.perf_counter()
        admission = check_and_admit([inputs], work / "quarantine")
        files = len(admission.reports)
        figures["gate_files"] = files
        figures["gate_s_per_file"] = round((time.perf_counter() - t) / files, 3)
        figures["gate_admitted"] = len(admission.admitted)

        backfill(admission.admitted, work / "features")
        frame = load_dataset(work / "features")
        t = time.perf_counter()
        report = validate_frame("features", frame)
        figures["features_rows"] = len(frame)
        figures["features_checks"] = len(report.outcomes)
        figures["features_suite_s"] = round(time.perf_counter() - t, 2)
        figures["features_passed"] = report.success
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
