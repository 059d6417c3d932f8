"""``cryptovol simulate``: write synthetic recordings from the market simulator."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tasks.commands._args import positive_float
from tasks.core.timeutil import TimestampError, format_ts, parse_ts
from tasks.sim.simulator import DEFAULT_START
from tasks.sim.writer import write_recordings


def _start(text: str) -> float:
    try:
        return parse_ts(text)
    except TimestampError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _products(text: str) -> list[str]:
    products = [p.strip() for p in text.split(",") if p.strip()]
    if not products:
        raise argparse.ArgumentTypeError("no products given")
    if len(set(products)) != len(products):
        raise argparse.ArgumentTypeError(f"duplicate products in {text!r}")
    return products


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--minutes", type=positive_float, required=True, help="event time to simulate"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--products", type=_products, default=["BTC-USD", "ETH-USD"], help="comma-separated"
    )
    parser.add_argument(
        "--start",
        type=_start,
        default=DEFAULT_START,
        help=f"first event time, ISO-8601 UTC (default {format_ts(DEFAULT_START)})",
    )
    parser.add_argument("--out", required=True, help="directory for the recordings")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"cryptovol simulate: --out {out} is a file; give a directory", file=sys.stderr)
        return 2
    began = time.perf_counter()
    summary = write_recordings(
        args.out, products=args.products, seed=args.seed, start=args.start, minutes=args.minutes
    )
    elapsed = time.perf_counter() - began
    print(f"wrote {len(summary.files)} file(s) to {args.out} in {elapsed:.1f} s:")
    for path in summary.files:
        print(f"  {path.name}")
    print(f"messages: {summary.messages} ({summary.heartbeats} heartbeats)")
    for product in args.products:
        print(f"tickers {product}: {summary.tickers[product]}")
    print(f"span: {summary.first_ts} .. {summary.last_ts}")
    return 0
