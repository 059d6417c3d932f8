"""``cryptovol broker``: the embedded broker in the foreground; stops on SIGINT or SIGTERM.

Killed outright (SIGKILL), it takes the broker process with it (:func:`start_broker`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from tasks.commands._args import port_number
from tasks.io.broker import BrokerStartError, start_broker, stop_broker
from tasks.io.kafka import ensure_topics
from tasks.settings import get_settings

log = logging.getLogger("cryptovol.broker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=9092, help="1-65535 (default 9092)")


def run(args: argparse.Namespace) -> int:
    base = get_settings()
    settings = base.model_copy(update={"kafka_bootstrap_servers": f"{args.host}:{args.port}"})
    try:
        proc = start_broker(args.host, args.port)
    except BrokerStartError as exc:
        log.error("cannot start the broker: %s", exc)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        created = ensure_topics(settings)
        log.info(
            "broker ready on %s:%d; topics created: %s",
            args.host,
            args.port,
            ", ".join(created) or "none",
        )
        while not stop.is_set():
            if proc.poll() is not None:
                log.error("broker exited with code %s", proc.returncode)
                return 1
            stop.wait(0.5)
        log.info("stopping broker")
        return 0
    finally:
        stop_broker(proc)
