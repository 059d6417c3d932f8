"""``cryptovol evaluate``: any registered model on any data, beside both baselines."""

from __future__ import annotations

import argparse
import json

from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri",
        default=None,
        help="e.g. models:/volatility-spike@champion (default), models:/volatility-spike/3",
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from tasks.io.registry import model_uri
    from tasks.stages.validate import evaluate_model

    settings = get_settings()
    uri = args.model_uri or model_uri(settings, "ml", "champion")
    out = evaluate_model(settings, uri, args.data)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"{uri} ({out['model_kind']}), label {out['label']}")
    print(
        f"  {out['rows']} rows, {out['start']} to {out['end']}, spike rate "
        f"{_fmt(out['positive_rate'])}"
    )
    if out.get("rows_in_training_span"):
        print(f"  warning: {out['rows_in_training_span']} rows lie in the model's training span")
    print(f"  {'':<40} {'PR-AUC':>8} {'z-score':>8} {'persist':>8} {'ROC-AUC':>8} {'rate':>7}")
    lines = [("all", out)]
    lines += [(f"product {k}", v) for k, v in out["per_product"].items()]
    lines += [(f"file {k}", v) for k, v in out["per_file"].items()]
    for name, m in lines:
        print(
            f"  {name[:40]:<40} {_fmt(m['pr_auc']):>8} {_fmt(m['baseline_pr_auc']):>8} "
            f"{_fmt(m['persistence_pr_auc']):>8} {_fmt(m['roc_auc']):>8} "
            f"{_fmt(m['positive_rate'], 3):>7}"
        )
    return 0


def _fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
