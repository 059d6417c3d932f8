"""``cryptovol validate-data raw|features|training|predictions PATH...``: check data against its
contract.

Prints one line per expectation (PASS/FAIL, rule, unexpected count, a sample) and exits 0 when
everything passes, 1 when an expectation fails, 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from data_contracts.suites import DEFAULT_PRODUCTS, KINDS, ContractOptions, options_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ContractOptions()
    parser.add_argument("kind", choices=KINDS, help="which contract")
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="raw: recordings (*.ndjson[.gz]) or directories; features/training: Parquet files "
        "or directories; predictions: NDJSON dumps of ticks.predictions",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report, not a table")
    parser.add_argument("--report", type=Path, help="also write the JSON report to this file")
    parser.add_argument(
        "--products",
        nargs="+",
        help=f"known products (default: {' '.join(DEFAULT_PRODUCTS)} and the configured ones)",
    )
    parser.add_argument(
        "--max-future-s",
        type=float,
        default=defaults.max_future_s,
        help="clock skew tolerated on timestamps (default: %(default)s)",
    )
    parser.add_argument(
        "--max-bad-lines",
        type=float,
        default=defaults.max_bad_line_fraction,
        help="fraction of unreadable lines tolerated, dropped and counted (default: %(default)s)",
    )
    parser.add_argument(
        "--label-rate",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        default=defaults.label_rate,
        help="bounds of the positive label rate (default: %(default)s)",
    )
    parser.add_argument(
        "--embargo-s",
        type=float,
        default=defaults.embargo_s,
        help="gap required between train and test rows of a product (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from data_contracts.frames import read_raw_batch, read_table
    from data_contracts.predictions import read_predictions
    from data_contracts.validate import validate_frame, validate_raw_batch
    from tasks.settings import get_settings

    if args.report is not None and args.report.is_dir():
        print(f"cryptovol validate-data: --report {args.report} is a directory", file=sys.stderr)
        return 2

    options = options_for(
        get_settings().products,
        max_future_s=args.max_future_s,
        max_bad_line_fraction=args.max_bad_lines,
        label_rate=tuple(args.label_rate),
        embargo_s=args.embargo_s,
    )
    if args.products:  # an explicit list replaces the known products
        options = replace(options, products=tuple(args.products))
    try:
        if args.kind == "raw":
            batch = read_raw_batch(args.paths)
        elif args.kind == "predictions":
            frame = read_predictions(args.paths)
        else:
            frame = read_table(args.paths)
    except (OSError, ValueError) as exc:  # missing files, unreadable Parquet (ArrowInvalid)
        print(f"cryptovol validate-data: cannot read input: {exc}", file=sys.stderr)
        return 2
    if args.kind == "raw":
        report = validate_raw_batch(batch, options)
    else:
        sources = [str(p) for p in args.paths]
        report = validate_frame(args.kind, frame, options, sources=sources)
    if args.report:
        try:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(report.to_json())
        except OSError as exc:
            print(f"cryptovol validate-data: cannot write --report: {exc}", file=sys.stderr)
            return 2
    print(report.to_json() if args.json else report.table())
    return 0 if report.success else 1
