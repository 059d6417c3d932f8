"""``cryptovol quickstart``: the whole local loop on embedded services, then a summary."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from tasks.settings import get_settings
from tasks.stack.quickstart import QuickstartOptions, run_quickstart


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = QuickstartOptions()
    parser.add_argument("--capture-minutes", type=float, default=defaults.capture_minutes)
    parser.add_argument(
        "--history-minutes",
        type=float,
        default=defaults.history_minutes,
        help="simulated history replayed and trained on",
    )
    parser.add_argument("--products", default=",".join(defaults.products))
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--broker-port", type=int, default=defaults.broker_port)
    parser.add_argument("--no-train", action="store_true", help="stop after the data stages")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument(
        "--verbose-console",
        action="store_true",
        help="also show the libraries' log lines on the console (they always go to the log file)",
    )


def _log_to_file(path: Path, *, verbose: bool) -> tuple[Path, TextIO]:
    """Every log line and warning to ``path``; returns it and the console stream.

    Unless ``verbose``, the process's own stderr (file descriptor 2) goes to the log file too:
    librdkafka's C threads and MLflow's progress bars write there directly, past Python's
    logging. The console is a copy of the original stderr, kept for the progress lines.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    console = sys.stderr
    if not verbose:
        for handler in [h for h in root.handlers if isinstance(h, logging.StreamHandler)]:
            root.removeHandler(handler)
        sys.stderr.flush()
        console = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8")
        with path.open("ab") as log_file:
            os.dup2(log_file.fileno(), 2)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path, console


def run(args: argparse.Namespace) -> int:
    options = QuickstartOptions(
        capture_minutes=args.capture_minutes,
        history_minutes=args.history_minutes,
        products=tuple(p.strip() for p in args.products.split(",") if p.strip()),
        seed=args.seed,
        broker_port=args.broker_port,
        train=not args.no_train,
    )
    settings = get_settings()
    log_path, stderr = _log_to_file(
        settings.data_dir / "quickstart.log", verbose=args.verbose_console
    )
    console = stderr if args.json else sys.stdout  # --json keeps stdout for the report

    def progress(line: str) -> None:
        print(line, file=console, flush=True)

    progress(f"cryptovol quickstart: the local loop end to end (library output: {log_path})")
    report = run_quickstart(settings, options, progress=progress)
    progress(report.render(settings))
    if args.json:
        full = {"stages": report.stages, "seconds": report.seconds}
        print(json.dumps(full, indent=2, default=str))
    return 0
