"""``cryptovol capture``: the exchange's ticker feed into ``ticks.raw`` and the raw archive."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tasks.io.kafka import BrokerUnavailable
from tasks.services.capture import run_capture
from tasks.settings import get_settings

log = logging.getLogger("cryptovol.capture")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="exchange WebSocket (default: Coinbase Advanced Trade)")
    parser.add_argument(
        "--products",
        help="comma-separated product ids (default: CRYPTOVOL_PRODUCTS, BTC-USD,ETH-USD)",
    )
    parser.add_argument("--minutes", type=float, help="stop after this many minutes")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (default 9101; 0: none)")
    parser.add_argument("--data-dir", type=Path, help="where the raw archive goes")
    parser.add_argument("--idle-timeout", type=float, help="reconnect after this many silent s")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    updates: dict[str, object] = {}
    if args.data_dir is not None:
        updates["data_dir"] = args.data_dir
    if args.idle_timeout is not None:
        updates["idle_timeout_s"] = args.idle_timeout
    settings = settings.model_copy(update=updates)
    products = [p.strip() for p in args.products.split(",") if p.strip()] if args.products else None
    try:
        stats = run_capture(
            settings,
            url=args.url,
            products=products,
            minutes=args.minutes,
            metrics_port=args.metrics_port,
            install_signal_handlers=True,
        )
    except BrokerUnavailable as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(stats.summary(), indent=2))
    return 1 if stats.undelivered else 0
