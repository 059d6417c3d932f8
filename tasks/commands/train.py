"""``cryptovol train``: data -> walk-forward validation -> final fit -> MLflow run -> challenger."""

from __future__ import annotations

import argparse
import json

from tasks.core.models import CANDIDATES
from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="PATH",
        help="backfilled Parquet files/dirs, or recordings (*.ndjson[.gz], dirs): backfilled first",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--label-mode", choices=("absolute", "relative"), default="absolute")
    parser.add_argument("--quantile", type=float, default=0.9, help="tau quantile (absolute label)")
    parser.add_argument("--k", type=float, default=2.0, help="multiple of trailing vol (relative)")
    parser.add_argument(
        "--tau-window-s",
        type=float,
        default=3600.0,
        help="fit tau on the last this many seconds of training rows (0: all of them)",
    )
    parser.add_argument("--folds", type=int, default=4, help="walk-forward validation folds")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="final held-out part")
    parser.add_argument("--train-step-s", type=int, default=2, help="keep a row every N seconds")
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shuffle-labels",
        action="store_true",
        help="train on shuffled labels: a deliberately degraded model that the gates must refuse",
    )
    parser.add_argument(
        "--alias", default="challenger", help="alias for the new version ('' for none)"
    )


def run(args: argparse.Namespace) -> int:
    from tasks.core.training import TrainConfig, TrainingError
    from tasks.io.registry import train_and_register

    settings = get_settings()
    config = TrainConfig(
        label_mode=args.label_mode,
        quantile=args.quantile,
        k=args.k,
        tau_window_s=args.tau_window_s or None,
        n_folds=args.folds,
        test_fraction=args.test_fraction,
        train_step_s=args.train_step_s,
        candidates=tuple(args.candidates),
        seed=args.seed,
        shuffle_labels=args.shuffle_labels,
    )
    try:
        out = train_and_register(settings, args.data, config, alias=args.alias or None)
    except TrainingError as exc:
        print(json.dumps({"error": str(exc)}) if args.json else f"cannot train: {exc}")
        return 2
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    test, timings = out["metrics"], out["timings"]
    print(f"registered {settings.registered_model} version {out['version']} ({out['selected']})")
    print(f"  run {out['run_id']}; baseline version {out['baseline_version']}")
    print(
        f"  test part: {test['rows']} rows, spike rate {_fmt(test['positive_rate'])}: PR-AUC "
        f"{_fmt(test['pr_auc'])} vs z-score {_fmt(test['baseline_pr_auc'])} vs persistence "
        f"{_fmt(test['persistence_pr_auc'])}; threshold {_fmt(test['threshold'])}"
    )
    for name, v in out["summary"]["validation"].items():
        folds = ", ".join(_fmt(x) for x in v["pr_auc_folds"])
        print(f"  folds {name:<14} mean {_fmt(v['pr_auc_mean'])} [{folds}]")
    for note in out["summary"]["notes"]:
        print(f"  note: {note}")
    cached = " (cached)" if timings["backfill_cached"] else ""
    print(
        f"  time: backfill {timings['backfill_s']:.1f} s{cached}, "
        f"train {timings['train_s']:.1f} s, mlflow {timings['mlflow_s']:.1f} s, "
        f"total {timings['total_s']:.1f} s"
    )
    return 0


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
