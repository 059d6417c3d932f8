"""``cryptovol exchange``: the simulator or a recording over a local Advanced Trade WebSocket."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from pathlib import Path

from tasks.commands._args import port_number, positive_float, positive_int
from tasks.core.timeutil import TimestampError, parse_ts
from tasks.io.broker import port_problem
from tasks.io.recordings import expand_inputs
from tasks.services.replay import parse_speed
from tasks.settings import get_settings
from tasks.sim.exchange import ExchangeServer, recording_ticks, simulator_ticks

log = logging.getLogger("cryptovol.exchange")


def _speed(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _start(text: str) -> float:
    try:
        return parse_ts(text)
    except TimestampError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=8765, help="1-65535 (default 8765)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    source.add_argument("--replay", nargs="+", type=Path, metavar="FILE", help="serve recordings")
    parser.add_argument("--products", help="simulated products (default BTC-USD,ETH-USD)")
    parser.add_argument(
        "--start", type=_start, help="simulated start time, ISO-8601 UTC (default: now)"
    )
    parser.add_argument("--loop", action="store_true", help="loop the recordings")
    parser.add_argument(
        "--speed", type=_speed, default=1.0, help="pace multiplier, or 'max' (default 1)"
    )
    parser.add_argument(
        "--drop-every", type=positive_float, metavar="SECONDS", help="drop connections"
    )
    parser.add_argument(
        "--skip-seq-every", type=positive_int, metavar="N", help="skip a sequence number every N"
    )


def run(args: argparse.Namespace) -> int:
    problem = port_problem(args.host, args.port)
    if problem is not None:
        log.error("cannot serve the exchange: %s", problem)
        return 1
    if args.replay:
        try:
            ticks = recording_ticks(expand_inputs(args.replay), loop=args.loop)
        except FileNotFoundError as exc:
            log.error("%s", exc)
            return 2
    else:
        products = (
            [p.strip() for p in args.products.split(",") if p.strip()]
            if args.products
            else list(get_settings().products)
        )
        start = args.start if args.start is not None else time.time()
        ticks = simulator_ticks(products, args.seed, start)
    server = ExchangeServer(
        ticks,
        host=args.host,
        port=args.port,
        speed=args.speed,
        drop_every_s=args.drop_every,
        skip_seq_every=args.skip_seq_every,
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(server))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    return 0


async def _serve(server: ExchangeServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        log.info("serving on %s (Ctrl-C stops)", server.url)
        await stop.wait()
    log.info("stopped after %d ticks, %d drops", server.ticks_generated, server.drops)
