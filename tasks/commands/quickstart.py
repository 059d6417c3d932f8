"""``cryptovol quickstart``: the whole local loop on embedded services, then a summary."""

from __future__ import annotations

import argparse
import json

from tasks.settings import get_settings
from tasks.stack.quickstart import QuickstartOptions, run_quickstart


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = QuickstartOptions()
    parser.add_argument("--capture-minutes", type=float, default=defaults.capture_minutes)
    parser.add_argument(
        "--history-minutes",
        type=float,
        default=defaults.history_minutes,
        help="simulated history replayed and trained on",
    )
    parser.add_argument("--products", default=",".join(defaults.products))
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--broker-port", type=int, default=defaults.broker_port)
    parser.add_argument("--no-train", action="store_true", help="stop after the data stages")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")


def run(args: argparse.Namespace) -> int:
    options = QuickstartOptions(
        capture_minutes=args.capture_minutes,
        history_minutes=args.history_minutes,
        products=tuple(p.strip() for p in args.products.split(",") if p.strip()),
        seed=args.seed,
        broker_port=args.broker_port,
        train=not args.no_train,
    )
    settings = get_settings()
    report = run_quickstart(settings, options)
    if args.json:
        full = {"stages": report.stages, "seconds": report.seconds}
        print(json.dumps(full, indent=2, default=str))
    else:
        print(report.render(settings))
    return 0
