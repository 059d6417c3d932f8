"""``cryptovol backfill INPUTS... --out PATH``: recordings or the archive -> Parquet features."""

from __future__ import annotations

import argparse
import json
import logging

from tasks.core.features import EngineConfig

log = logging.getLogger("cryptovol.backfill")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EngineConfig()
    parser.add_argument(
        "inputs", nargs="*", help="recordings (.ndjson[.gz]) or directories (default: the archive)"
    )
    parser.add_argument(
        "--out",
        help="a .parquet file, or a directory for a data set partitioned by product_id and date "
        "(default: the feature store)",
    )
    parser.add_argument(
        "--late-tolerance-s",
        type=float,
        default=defaults.late_tolerance_s,
        help="late ticks within this many seconds are kept (default %(default)s)",
    )
    parser.add_argument(
        "--max-gap-s",
        type=float,
        default=defaults.max_gap_s,
        help="feature windows restart after a longer gap (default %(default)s)",
    )
    parser.add_argument(
        "--skip-contracts",
        action="store_true",
        help="backfill without checking the recordings against the raw contract (says so)",
    )


def run(args: argparse.Namespace) -> int:
    from data_contracts.gate import NothingAdmitted
    from tasks.settings import get_settings
    from tasks.stages.backfill import run_backfill

    config = EngineConfig(late_tolerance_s=args.late_tolerance_s, max_gap_s=args.max_gap_s)
    if args.skip_contracts:
        print("data contracts skipped (--skip-contracts): the recordings are not checked")
    try:
        stats = run_backfill(
            get_settings(),
            args.inputs or None,
            args.out,
            config,
            check_contracts=not args.skip_contracts,
        )
    except (FileNotFoundError, NothingAdmitted) as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(stats.as_dict(), indent=2))
    if not stats.rows:
        log.error("no rows: the inputs hold no usable ticks")
        return 1
    return 0
