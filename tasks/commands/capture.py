"""``cryptovol capture``: the exchange's ticker feed into ``ticks.raw`` and the raw archive."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tasks.commands._args import port_or_zero, positive_float
from tasks.io.archive import ArchiveWriteError
from tasks.io.broker import port_problem
from tasks.io.kafka import BrokerUnavailable
from tasks.services.capture import run_capture
from tasks.settings import get_settings

log = logging.getLogger("cryptovol.capture")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", type=_websocket_url, help="exchange WebSocket (default: Coinbase Advanced Trade)"
    )
    parser.add_argument(
        "--products",
        help="comma-separated product ids (default: CRYPTOVOL_PRODUCTS, BTC-USD,ETH-USD)",
    )
    parser.add_argument("--minutes", type=positive_float, help="stop after this many minutes")
    parser.add_argument(
        "--metrics-port", type=port_or_zero, help="Prometheus port (default 9101; 0: none)"
    )
    parser.add_argument("--data-dir", type=Path, help="where the raw archive goes")
    parser.add_argument(
        "--idle-timeout", type=positive_float, help="reconnect after this many silent s"
    )


def _websocket_url(text: str) -> str:
    from websockets.exceptions import InvalidURI
    from websockets.uri import parse_uri

    try:
        parse_uri(text)
    except InvalidURI as exc:
        raise argparse.ArgumentTypeError(f"not a ws:// or wss:// URL: {text!r} ({exc})") from None
    return text


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    updates: dict[str, object] = {}
    if args.data_dir is not None:
        updates["data_dir"] = args.data_dir
    if args.idle_timeout is not None:
        updates["idle_timeout_s"] = args.idle_timeout
    settings = settings.model_copy(update=updates)
    products = [p.strip() for p in args.products.split(",") if p.strip()] if args.products else None
    port = settings.capture_metrics_port if args.metrics_port is None else args.metrics_port
    problem = port_problem(settings.metrics_host, port) if port else None
    if problem is not None:
        log.error("cannot serve capture metrics: %s (choose --metrics-port, 0 for none)", problem)
        return 1
    try:
        stats = run_capture(
            settings,
            url=args.url,
            products=products,
            minutes=args.minutes,
            metrics_port=port,
            install_signal_handlers=True,
        )
    except (BrokerUnavailable, ArchiveWriteError) as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(stats.summary(), indent=2))
    if stats.error:
        log.error("%s", stats.error)
        return 1
    return 1 if stats.undelivered else 0
