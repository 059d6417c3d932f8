"""Training end to end on the real recordings in both ../shared/data folders (five days).

Times each stage separately: the backfill (uncached, then the cached load), the walk-forward
training of every candidate, and the MLflow logging and registration into a temporary SQLite
store, then loads the registered model as serving does and times single-row scoring. Prints one
JSON object with the timings and the figures: leave-one-day-out and leave-one-session-out PR-AUC
of every scorer, pooled and per day or session with block-bootstrap intervals, the missing-input
report, the test part's PR-AUC of the model beside the z-score and persistence baselines on the
same rows, and the fold-by-fold walk-forward PR-AUC. Without ../shared/data it uses 150
simulated minutes instead (and says so).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED = (
    SHARED_DATA / "coinbase-btc-usd-2025-12",
    SHARED_DATA / "coinbase-btc-usd-2025-11-13_2025-12-01",
)


def _single_row_scoring(model_uri: str, frame, n: int = 5000) -> dict:
    """The registered model as serving loads it (``load_predictor``): load time, then
    ``predict_array`` on one row at a time (the /predict path's model call), in milliseconds."""
    import numpy as np

    from tasks.core.models import feature_matrix
    from tasks.io.model_store import load_predictor

    started = time.perf_counter()
    predictor = load_predictor(model_uri)
    load_ms = (time.perf_counter() - started) * 1e3
    X = feature_matrix(frame, predictor.feature_names).to_numpy()
    rows = [X[i : i + 1].copy() for i in np.linspace(0, len(X) - 1, n).astype(int)]
    predictor.predict_array(rows[0])
    times = []
    for row in rows:
        t = time.perf_counter()
        predictor.predict_array(row)
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1e3
    return {
        "load_ms": load_ms,
        "calls": n,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
    }


def _held_out(sessions: dict) -> dict:
    """Per held-out session (or day) and pooled: rows, spike rate, spikes, bursts, PR-AUC and
    intervals."""
    keep = ("rows", "positive_rate", "positives", "episodes", "enough", "start", "end", "tau")
    out = {}
    for figures in [*sessions.get("sessions", []), sessions.get("pooled")]:
        if figures is None:
            continue
        name = f"session {figures['session']}" if "session" in figures else "pooled"
        out[name] = {k: figures[k] for k in keep if k in figures}
        out[name]["pr_auc"] = figures["pr_auc"]
        out[name]["interval"] = figures.get("interval")
        out[name]["minus_persistence"] = figures.get("minus_persistence")
        out[name]["minus_zscore"] = figures.get("minus_zscore")
    out["selected"] = sessions.get("selected")
    out["selection"] = sessions.get("selection")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", help="recordings or Parquet (default: ../shared/data)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip logging and registration")
    parser.add_argument("--label-mode", choices=("absolute", "relative"), default="absolute")
    parser.add_argument("--k", type=float, default=1.5, help="relative label: multiple of trail")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    from tasks.core.training import TrainConfig, train
    from tasks.settings import Settings
    from tasks.sim.writer import write_recordings
    from tasks.stages.data import load_frame
    from tasks.stages.train import log_training

    imports_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        inputs, source = args.inputs, "arguments"
        if not inputs:
            if all(folder.is_dir() for folder in SHARED):
                inputs, source = [str(f) for f in SHARED], "../shared/data (both folders)"
            else:
                write_recordings(tmp_path / "sim", seed=1, minutes=150)
                inputs, source = (
                    [str(tmp_path / "sim")],
                    "simulated 150 minutes (no ../shared/data)",
                )
        cache = tmp_path / "cache"
        t0 = time.perf_counter()
        frame, first = load_frame(inputs, cache)
        t1 = time.perf_counter()
        frame, cached = load_frame(inputs, cache)
        t2 = time.perf_counter()
        config = TrainConfig()
        if args.label_mode == "relative":
            config = TrainConfig(label_mode="relative", k=args.k)
        result = train(frame, config)
        t3 = time.perf_counter()
        record = None
        if not args.no_mlflow:
            settings = Settings(
                data_dir=tmp_path / "data",
                mlflow_tracking_uri=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}",
            )
            record = log_training(settings, result, example=frame.head(100), data_paths=inputs)
        t4 = time.perf_counter()
        scoring = None if record is None else _single_row_scoring(record.model_uri, frame)
    summary = result.summary()
    out = {
        "data": source,
        "rows": summary["data"]["rows"],
        "labelled_rows": summary["data"]["labelled_rows"],
        "span": [summary["data"]["start"], summary["data"]["end"]],
        "seconds": {
            "imports": imports_s,
            "backfill_uncached": t1 - t0 if first.recordings else None,
            "load_cached": t2 - t1,
            "train": t3 - t2,
            "train_stages": summary["timings_s"],
            "mlflow_log_and_register": None if record is None else t4 - t3,
            "end_to_end_cached": (t2 - t1) + (t4 - t2),
            "end_to_end_uncached": (t1 - t0) + (t4 - t2),
        },
        "registered_model_single_row_ms": scoring,
        "backfill_cache_hit_second_time": cached.backfill_cached,
        "selected": result.selected,
        "label": summary["label"],
        "leave_one_day_out": _held_out(summary["days"]),
        "leave_one_session_out": _held_out(summary["sessions"]),
        "missing_inputs": summary["sessions"].get("missing_inputs"),
        "test": summary["test"],
        "validation": summary["validation"],
        "notes": summary["notes"],
    }
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
