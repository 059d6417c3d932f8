"""``cryptovol simulate``: write synthetic recordings from the market simulator.

``--minutes N``: one connection's recordings of the given products, a file per hour.
``--days N``: a market of many products over whole days, each (product, day) in its own
volatility regime, laid out as the raw archive is (a folder and a file per product and hour).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tasks.commands._args import positive_float, positive_int
from tasks.core.timeutil import TimestampError, format_ts, parse_ts
from tasks.sim.simulator import DEFAULT_START
from tasks.sim.writer import write_market, write_recordings

# the USD market by size: BTC and ETH are calibrated on recordings, the others get a generic spec
MARKET = (
    "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "DOGE-USD", "ADA-USD", "AVAX-USD", "LINK-USD",
    "DOT-USD", "LTC-USD", "BCH-USD", "UNI-USD", "XLM-USD", "ATOM-USD", "NEAR-USD", "AAVE-USD",
    "ETC-USD", "FIL-USD", "HBAR-USD", "ICP-USD", "APT-USD", "ARB-USD", "OP-USD", "SUI-USD",
)  # fmt: skip


def _start(text: str) -> float:
    try:
        return parse_ts(text)
    except TimestampError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _products(text: str) -> list[str]:
    """A comma-separated list of product ids, or a count N: the first N of :data:`MARKET`."""
    if text.strip().isdigit():
        count = int(text)
        if not 0 < count <= len(MARKET):
            raise argparse.ArgumentTypeError(f"a count of products is 1-{len(MARKET)}")
        return list(MARKET[:count])
    products = [p.strip() for p in text.split(",") if p.strip()]
    if not products:
        raise argparse.ArgumentTypeError("no products given")
    if len(set(products)) != len(products):
        raise argparse.ArgumentTypeError(f"duplicate products in {text!r}")
    return products


def add_arguments(parser: argparse.ArgumentParser) -> None:
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--minutes", type=positive_float, help="event time to simulate")
    length.add_argument(
        "--days",
        type=positive_int,
        help="whole days of a market, a regime per product and day, laid out as the archive",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--products",
        type=_products,
        default=["BTC-USD", "ETH-USD"],
        help=f"comma-separated, or a count N for the first N of the USD market (max {len(MARKET)})",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="processes writing products (--days)"
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
    if args.days:
        summary = write_market(
            args.out,
            args.products,
            seed=args.seed,
            start=args.start,
            days=args.days,
            workers=args.workers,
        )
    else:
        summary = write_recordings(
            args.out, products=args.products, seed=args.seed, start=args.start, minutes=args.minutes
        )
    elapsed = time.perf_counter() - began
    print(f"wrote {len(summary.files)} file(s) to {args.out} in {elapsed:.1f} s:")
    for path in summary.files[:24]:
        print(f"  {path.relative_to(out)}")
    if len(summary.files) > 24:
        print(f"  ... and {len(summary.files) - 24} more")
    print(f"messages: {summary.messages} ({summary.heartbeats} heartbeats)")
    for product in args.products:
        print(f"tickers {product}: {summary.tickers[product]}")
    print(f"span: {summary.first_ts} .. {summary.last_ts}")
    return 0
