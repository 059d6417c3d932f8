"""``cryptovol drift``: judge the current features against a model's training sample, now."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.commands._args import positive_float, positive_int
from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    current = parser.add_mutually_exclusive_group()
    current.add_argument(
        "--current",
        nargs="+",
        metavar="PATH",
        help="a backfilled data set (Parquet) or recordings to judge",
    )
    current.add_argument(
        "--minutes",
        type=positive_float,
        help="judge the last N minutes of ticks.features (default: CRYPTOVOL_MONITOR_MINUTES, 60)",
    )
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument(
        "--reference",
        nargs="+",
        metavar="PATH",
        help="a data set to compare with instead of the model's training sample",
    )
    reference.add_argument(
        "--model-uri",
        help="the model judged, e.g. models:/volatility-spike/3 (default: the champion)",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="skip live model quality (ticks.predictions joined with labels from ticks.raw)",
    )
    parser.add_argument("--no-push", action="store_true", help="do not push to the Pushgateway")
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="start train, validate and promote when the check makes retraining due "
        "(through the deployments with PREFECT_API_URL set, else in this process)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="read --current and --reference by (product, day) partition on a local Dask "
        "cluster of this many worker processes (or on the cluster CRYPTOVOL_DASK_ADDRESS "
        "names); the report is the same",
    )
    parser.add_argument("--json", action="store_true", help="print the check as JSON")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    from monitoring.check import NoCurrentData, run_check
    from monitoring.retrain import start_retraining
    from tasks.io.dask_cluster import partition_runner
    from tasks.io.files import WriteError, describe
    from tasks.io.kafka import BrokerUnavailable
    from tasks.io.reference import ReferenceMissing
    from tasks.io.registry import RegistryError
    from tasks.stages.data import input_problem

    settings = get_settings()
    problems = [
        problem
        for path in [*(args.current or []), *(args.reference or [])]
        if (problem := input_problem(Path(path)))
    ]
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    reads_data = bool(args.current or args.reference)
    address = settings.dask_address if reads_data else ""
    try:
        with partition_runner(address, args.workers if reads_data else None) as run_all:
            result = run_check(
                settings,
                current=args.current,
                minutes=args.minutes,
                reference_data=args.reference,
                model_uri=args.model_uri,
                live=not args.no_live,
                push=not args.no_push,
                retrain=(lambda why: start_retraining(settings, why)) if args.retrain else None,
                run_all=run_all,
            )
    except LookupError as exc:  # no such model (a usage error when named), no data, no sample
        print(f"error: {exc}", file=sys.stderr)
        named = args.model_uri is not None and not isinstance(exc, NoCurrentData | ReferenceMissing)
        return 2 if named else 1
    except (BrokerUnavailable, RegistryError, WriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk or read-only data dir met in a library
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    entry = result.entry
    drift = entry["drift"]
    top = ", ".join(f["feature"] for f in sorted(drift["features"], key=lambda f: -f["score"])[:3])
    print(
        f"drift share {drift['share']:.2f} ({drift['drifted']} of {len(drift['features'])} "
        f"features; limit {entry['limit']:g}); most moved: {top}"
    )
    print(f"current:   {entry['current']['source']}, {entry['current']['rows']} rows")
    print(f"reference: {entry['reference']['source']}, {entry['reference']['rows']} rows")
    for window, figures in (entry["live"] or {}).items():
        print(
            f"live {window}: PR-AUC {_fmt(figures['pr_auc'])} (persistence "
            f"{_fmt(figures['persistence_pr_auc'])}, z-score {_fmt(figures['zscore_pr_auc'])}) "
            f"on {figures['rows']} rows, {figures['positives']} spikes"
        )
    started = "started: " if entry["retrain"]["triggered"] else ""
    print(f"retraining: {started}{entry['retrain']['why']}")
    for note in entry["notes"]:
        print(f"note: {note}")
    print(f"report: {result.report}")
    print(f"index:  {result.index}")
    return 0
