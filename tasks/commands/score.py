"""``cryptovol score``: score ticks.features with the registered champion into ticks.predictions."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from tasks.commands._args import port_or_zero, positive_float, positive_int

log = logging.getLogger("cryptovol.score")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=None, help="consumer group id (cryptovol-scorer)")
    parser.add_argument(
        "--variant",
        choices=("ml", "baseline"),
        default=None,
        help="model to serve (default: MODEL_VARIANT, else ml)",
    )
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
        help="Prometheus /metrics port (0 disables; default: the settings, 9103)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=500, help="records per poll and commit (>= 1)"
    )


def run(args: argparse.Namespace) -> int:
    from tasks.core.gc_tuning import tune_gc_for_a_long_running_process
    from tasks.io.kafka import BrokerUnavailable
    from tasks.io.model_source import fail_fast_registry
    from tasks.io.registry import RegistryError
    from tasks.services.scorer import DEFAULT_GROUP, run_scorer
    from tasks.settings import get_settings

    settings = get_settings()
    fail_fast_registry()
    group = args.group or DEFAULT_GROUP
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "scoring %s -> %s (group %s, broker %s, registry %s)",
        settings.features_topic,
        settings.predictions_topic,
        group,
        settings.kafka_bootstrap_servers,
        settings.tracking_uri,
    )
    tune_gc_for_a_long_running_process()
    try:
        stats = run_scorer(
            settings,
            group,
            stop_event=stop,
            max_idle_s=args.max_idle_seconds,
            metrics_port=(
                settings.scorer_metrics_port if args.metrics_port is None else args.metrics_port
            ),
            variant=args.variant,
            batch_size=args.batch_size,
        )
    except (BrokerUnavailable, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats.as_dict()))
    return 0
