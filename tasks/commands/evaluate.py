"""``cryptovol evaluate``: any registered model on any data, beside both baselines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri",
        default=None,
        help="e.g. models:/volatility-spike@champion (default), models:/volatility-spike/3",
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _flat(figures: dict) -> dict:
    """A session's figures in the shape of the overall ones."""
    pr = figures["pr_auc"]
    return {
        "pr_auc": pr["model"],
        "baseline_pr_auc": pr["zscore"],
        "persistence_pr_auc": pr["persistence"],
        "roc_auc": None,
        "positive_rate": figures["positive_rate"],
    }


def run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from tasks.core.scoring import format_metric as fmt
    from tasks.io.model_store import ModelLoadError
    from tasks.io.registry import (
        RegistryError,
        is_missing,
        is_unreachable,
        model_uri,
        registry_error,
        unreachable_message,
    )
    from tasks.stages.data import input_problem
    from tasks.stages.evaluate import evaluate_model

    settings = get_settings()
    uri = args.model_uri or model_uri(settings, "ml", "champion")
    problems = [problem for path in args.data if (problem := input_problem(Path(path)))]
    if problems:
        return _fail("; ".join(problems), 2)
    try:
        out = evaluate_model(settings, uri, args.data)
    except RegistryError as exc:
        return _fail(str(exc), 1)
    except ModelLoadError as exc:
        if is_unreachable(exc):
            return _fail(unreachable_message(settings.tracking_uri), 1)
        return _fail(f"no model at {uri}: {str(exc)[:300]}", 2)
    except MlflowException as exc:
        nothing_there = ("No such artifact", "artifact repository")
        if is_missing(exc) or any(text in exc.message for text in nothing_there):
            return _fail(f"no model at {uri}: {exc.message[:300]}", 2)
        return _fail(str(registry_error(exc, settings.tracking_uri, f"loading {uri}")), 1)
    except (FileNotFoundError, ValueError) as exc:  # data that gives no labelled rows, etc.
        return _fail(str(exc), 2)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"{uri} ({out['model_kind']}), label {out['label']}")
    print(
        f"  {out['rows']} rows, {out['start']} to {out['end']}, spike rate "
        f"{fmt(out['positive_rate'])}"
    )
    if out.get("rows_in_training_span"):
        print(f"  warning: {out['rows_in_training_span']} rows lie in the model's training span")
    print(f"  {'':<40} {'PR-AUC':>8} {'z-score':>8} {'persist':>8} {'ROC-AUC':>8} {'rate':>7}")
    lines = [("all", out)]
    lines += [
        (f"session {f['session']} ({f['start'][:16]})", _flat(f))
        for f in out["sessions"]["sessions"]
    ]
    lines += [(f"product {k}", v) for k, v in out["per_product"].items()]
    lines += [(f"file {k}", v) for k, v in out["per_file"].items()]
    for name, m in lines:
        print(
            f"  {name[:40]:<40} {fmt(m['pr_auc']):>8} {fmt(m['baseline_pr_auc']):>8} "
            f"{fmt(m['persistence_pr_auc']):>8} {fmt(m['roc_auc']):>8} "
            f"{fmt(m['positive_rate'], 3):>7}"
        )
    pooled = out["sessions"]["pooled"]
    if pooled and pooled.get("interval"):
        interval = pooled["interval"]
        print(
            "  90 % block-bootstrap intervals (all rows): "
            + ", ".join(
                f"{k} [{v[0]:.3f}, {v[1]:.3f}]" for k, v in interval.items() if v[0] is not None
            )
        )
    return 0


def _fail(message: str, code: int) -> int:
    print(f"cryptovol evaluate: {message}", file=sys.stderr)
    return code
