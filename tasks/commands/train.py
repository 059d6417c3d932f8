"""``cryptovol train``: contracts, walk-forward validation, final fit, MLflow, challenger."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tasks.core.models import CANDIDATES, OPTIONAL_CANDIDATES
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
    parser.add_argument("--label-mode", choices=("absolute", "relative"))
    parser.add_argument("--quantile", type=float, help="tau quantile (absolute label)")
    parser.add_argument("--k", type=float, help="multiple of trailing vol (relative label)")
    parser.add_argument(
        "--tau-window-s",
        type=float,
        help="fit tau on the last this many seconds of training rows (0: all of them)",
    )
    parser.add_argument("--folds", type=int, dest="n_folds", help="walk-forward validation folds")
    parser.add_argument("--test-fraction", type=float, help="final held-out part")
    parser.add_argument("--train-step-s", type=int, help="keep a training row every N seconds")
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=(*CANDIDATES, *OPTIONAL_CANDIDATES),
        help=f"default: {' '.join(CANDIDATES)}",
    )
    parser.add_argument(
        "--session-gap-s", type=float, help="a pause this long starts a new session (LOSO)"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--max-rows-per-product",
        type=_row_budget,
        help="train on up to this many rows of each product, a contiguous session of each day "
        "(0: no such cap; default: the train_max_rows_per_product setting)",
    )
    parser.add_argument(
        "--max-rows",
        type=_row_budget,
        help="train on up to this many rows in all, an equal share per product (0: no such cap; "
        "default: the train_max_rows setting)",
    )
    parser.add_argument(
        "--shuffle-labels",
        action="store_true",
        default=None,
        help="train on shuffled labels: a deliberately degraded model that the gates must refuse",
    )
    parser.add_argument(
        "--alias", default="challenger", help="alias for the new version ('' for none)"
    )
    parser.add_argument(
        "--skip-contracts",
        action="store_true",
        help="train without checking the inputs against their data contracts (says so)",
    )
    parser.epilog = "Options left out take TrainConfig's defaults (tasks/core/training.py)."


def _row_budget(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no cap) or more, not {value}")
    return value


def _config(args: argparse.Namespace):
    """TrainConfig with the options given on the command line, its own defaults for the rest."""
    from tasks.core.training import TrainConfig

    given = {
        name: getattr(args, name)
        for name in (
            "label_mode",
            "quantile",
            "k",
            "n_folds",
            "test_fraction",
            "train_step_s",
            "session_gap_s",
            "seed",
            "shuffle_labels",
        )
        if getattr(args, name) is not None
    }
    if args.tau_window_s is not None:
        given["tau_window_s"] = args.tau_window_s or None
    if args.candidates:
        given["candidates"] = tuple(args.candidates)
    return TrainConfig(**given)


def run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from data_contracts.gate import NothingAdmitted
    from tasks.core.scoring import format_metric as fmt
    from tasks.core.training import TrainingError
    from tasks.io.feature_store import NotADataset
    from tasks.io.files import WriteError, describe
    from tasks.io.registry import RegistryError, registry_error
    from tasks.stages.backfill import NoRows
    from tasks.stages.data import input_problem
    from tasks.stages.train import train_and_register

    settings = get_settings()
    if args.skip_contracts:
        print("data contracts skipped (--skip-contracts): the inputs are not checked")

    def fail(message: str, code: int) -> int:
        print(json.dumps({"error": message}) if args.json else f"cannot train: {message}")
        return code

    problems = [problem for path in args.data if (problem := input_problem(Path(path)))]
    if problems:
        return fail("; ".join(problems), 2)
    try:
        out = train_and_register(
            settings,
            args.data,
            _config(args),
            alias=args.alias or None,
            check_contracts=not args.skip_contracts,
            max_rows_per_product=args.max_rows_per_product,
            max_rows=args.max_rows,
        )
    except (TrainingError, NothingAdmitted, FileNotFoundError, NoRows, NotADataset) as exc:
        return fail(str(exc), 2)
    except WriteError as exc:  # the backfill cache, a full disk, a read-only data dir
        return fail(str(exc), 1)
    except OSError as exc:  # the same met in a library (the local MLflow store...)
        return fail(describe(exc), 1)
    except RegistryError as exc:  # the registry cannot be reached, or refused the model
        return fail(str(exc), 1)
    except MlflowException as exc:
        return fail(str(registry_error(exc, settings.tracking_uri, "registering the model")), 1)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    test, timings = out["metrics"], out["timings"]
    print(f"registered {settings.registered_model} version {out['version']} ({out['selected']})")
    print(f"  run {out['run_id']}; baseline version {out['baseline_version']}")
    data = out["data"]
    budget = data["product_budget"]
    print(
        f"  rows used: {data['rows_used']} of {data['rows_available']} "
        f"(days with a session, per product: {data['days_used']} of {data['days_available']}); "
        f"budget: {'none' if budget is None else budget} rows a product (caps: "
        f"{data['max_rows_per_product'] or 'none'} a product, {data['max_rows'] or 'none'} in all)"
    )
    print(
        f"  test part: {test['rows']} rows, spike rate {fmt(test['positive_rate'])}: PR-AUC "
        f"{fmt(test['pr_auc'])} vs z-score {fmt(test['baseline_pr_auc'])} vs persistence "
        f"{fmt(test['persistence_pr_auc'])}; threshold {fmt(test['threshold'])}"
    )
    for unit in ("day", "session"):
        held_out = out["summary"][f"{unit}s"]
        if not held_out.get("pooled"):
            continue
        print(f"  leave one {unit} out (PR-AUC; * enough spikes to judge within the {unit}):")
        names = list(held_out["pooled"]["pr_auc"])
        print(f"    {unit:<11} {'rate':>6} " + " ".join(f"{n[:12]:>12}" for n in names))
        parts = [(f"{f['session']}{'*' if f['enough'] else ''}", f) for f in held_out["sessions"]]
        for label, f in [*parts, ("pooled", held_out["pooled"])]:
            cells = " ".join(f"{fmt(f['pr_auc'][n], 3):>12}" for n in names)
            print(f"    {label:<11} {fmt(f['positive_rate'], 3):>6} {cells}")
    for name, v in out["summary"]["validation"].items():
        folds = ", ".join(fmt(x) for x in v["pr_auc_folds"])
        print(f"  walk-forward {name:<14} mean {fmt(v['pr_auc_mean'])} [{folds}]")
    for note in out["summary"]["notes"]:
        print(f"  note: {note}")
    cached = " (cached)" if timings["backfill_cached"] else ""
    print(
        f"  time: contracts {timings['contracts_s']:.1f} s, backfill {timings['backfill_s']:.1f} s"
        f"{cached}, train {timings['train_s']:.1f} s, mlflow {timings['mlflow_s']:.1f} s, "
        f"total {timings['total_s']:.1f} s"
    )
    return 0
