"""The ``cryptovol`` console script.

Each command lives in its own module under ``tasks/commands`` exposing ``add_arguments(parser)``
and ``run(args) -> int``; only the command asked for is imported, so ``cryptovol --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, str] = {
    "quickstart": "Run the local loop end to end on embedded services",
    "up": "Start the whole local stack (broker, MLflow, Prefect, stream, service, Prometheus)",
    "down": "Stop the local stack started by `up`",
    "status": "Show each part of the local stack, its URL and its health",
    "broker": "Run the embedded Kafka-protocol broker in the foreground",
    "capture": "Capture the exchange's ticker feed into Kafka and the raw archive",
    "replay": "Replay recordings onto ticks.raw",
    "simulate": "Write synthetic recordings from the market simulator",
    "exchange": "Serve the simulator or a recording over a local Advanced Trade WebSocket",
    "featurize": "Stream features from ticks.raw to ticks.features",
    "score": "Score ticks.features with the registered champion into ticks.predictions",
    "backfill": "Compute features and labels from recordings into Parquet",
    "validate-data": "Check raw ticks, features or a training set against the data contracts",
    "train": "Train, evaluate against baselines and register a challenger",
    "evaluate": "Evaluate a registered model on recordings or a data set",
    "promote": "Move the champion alias to a model version",
    "rollback": "Move the champion alias back to the previous champion",
    "drift": "Judge the current features against the champion's training sample",
    "reports": "Serve the drift reports on 127.0.0.1 (or print the index path)",
    "alert-inbox": "Receive Alertmanager's notifications into a file (the local receiver)",
    "bench": "Measure throughput of the engine, replay and capture",
}


def _module_name(command: str) -> str:
    return "tasks.commands." + command.replace("-", "_")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = argparse.ArgumentParser(
        prog="cryptovol",
        description="Real-time crypto volatility-spike detector and its MLOps life cycle.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<14} {h}" for n, h in COMMANDS.items()),
    )
    top.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    verbose = argv[0] in ("-v", "--verbose")  # a top-level flag: only before the command
    argv = argv[1:] if verbose else argv
    if not argv:
        top.print_help()
        return 2
    command = argv[0]
    if command not in COMMANDS:
        top.parse_args(argv[:1])  # exits with argparse's usage error
    module = importlib.import_module(_module_name(command))
    parser = argparse.ArgumentParser(prog=f"cryptovol {command}", description=COMMANDS[command])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
