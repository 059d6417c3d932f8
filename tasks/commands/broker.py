"""``cryptovol broker``: the embedded broker in the foreground; stops on SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from tasks.io.broker import start_broker, stop_broker
from tasks.io.kafka import ensure_topics
from tasks.settings import get_settings

log = logging.getLogger("cryptovol.broker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9092)


def run(args: argparse.Namespace) -> int:
    base = get_settings()
    settings = base.model_copy(update={"kafka_bootstrap_servers": f"{args.host}:{args.port}"})
    proc = start_broker(args.host, args.port)
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
