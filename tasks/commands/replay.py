"""``cryptovol replay FILES... [--speed X|max]``: recordings onto ``ticks.raw``."""

from __future__ import annotations

import argparse
import json
import logging

from tasks.io.kafka import BrokerUnavailable
from tasks.services.replay import NothingToReplay, parse_speed, run_replay
from tasks.settings import get_settings

log = logging.getLogger("cryptovol.replay")


def _speed(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="recordings (.ndjson, .ndjson.gz) or directories")
    parser.add_argument(
        "--speed", type=_speed, default=1.0, help="pace multiplier, or 'max' (default 1)"
    )
    parser.add_argument(
        "--max-reported", type=int, default=10, help="malformed lines reported in full"
    )
    parser.epilog = (
        "Exit status: 0 when every record was delivered, 1 when some were not (or the broker "
        "went away), 2 when the inputs hold nothing to replay."
    )


def run(args: argparse.Namespace) -> int:
    try:
        stats = run_replay(get_settings(), args.files, args.speed, max_reported=args.max_reported)
    except BrokerUnavailable as exc:
        log.error("%s", exc)
        return 1
    except (FileNotFoundError, NothingToReplay) as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(stats.summary(), indent=2))
    if stats.error:
        log.error("%s", stats.error)
        return 1
    if stats.undelivered:
        log.error("%d record(s) not delivered", stats.undelivered)
        return 1
    return 0
