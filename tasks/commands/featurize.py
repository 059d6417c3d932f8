"""``cryptovol featurize``: stream features from ticks.raw to ticks.features until stopped."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from tasks.commands._args import port_or_zero, positive_float, positive_int
from tasks.core.gc_tuning import tune_gc_for_a_long_running_process
from tasks.io.broker import port_problem
from tasks.io.kafka import BrokerUnavailable
from tasks.services.featurizer import DEFAULT_GROUP, DEFAULT_WARMUP_RECORDS, run_featurizer
from tasks.settings import get_settings

log = logging.getLogger("cryptovol.featurize")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=DEFAULT_GROUP, help="consumer group id")
    parser.add_argument(
        "--max-idle-seconds",
        type=positive_float,
        default=None,
        help="exit after this long without input (default: run until SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "--metrics-port",
        type=port_or_zero,
        default=None,
        help="Prometheus /metrics port (0 disables; default: the settings, 9102)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=500, help="records per poll and commit (>= 1)"
    )
    parser.add_argument(
        "--warmup-records",
        type=positive_int,
        default=DEFAULT_WARMUP_RECORDS,
        help="first guess of the records to re-read before the committed offset to rebuild the "
        "engine's windows after a restart; grows by itself if short (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    port = settings.featurize_metrics_port if args.metrics_port is None else args.metrics_port
    problem = port_problem(settings.metrics_host, port) if port else None
    if problem is not None:
        print(f"error: cannot serve featurizer metrics: {problem}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "featurizing %s -> %s (group %s, broker %s)",
        settings.raw_topic,
        settings.features_topic,
        args.group,
        settings.kafka_bootstrap_servers,
    )
    tune_gc_for_a_long_running_process()
    try:
        stats = run_featurizer(
            settings,
            args.group,
            stop_event=stop,
            max_idle_s=args.max_idle_seconds,
            metrics_port=port,
            batch_size=args.batch_size,
            warmup_records=args.warmup_records,
        )
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats.as_dict()))
    return 0
