"""``cryptovol backfill INPUTS... --out PATH``: recordings or the archive -> Parquet features."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from tasks.commands._args import output_problem, positive_int
from tasks.core.features import EngineConfig

log = logging.getLogger("cryptovol.backfill")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EngineConfig()
    parser.add_argument(
        "inputs", nargs="*", help="recordings (.ndjson[.gz]) or directories (default: the archive)"
    )
    parser.add_argument(
        "--out",
        help="a .parquet file (replaced), or a directory for a data set partitioned by product_id "
        "and date, into which the rows are merged by record id: rows of other recordings stay, "
        "rows of these recordings are replaced (default: the feature store). Written atomically; "
        "a run without a single row writes nothing",
    )
    parser.add_argument(
        "--late-tolerance-s",
        type=_finite,
        default=defaults.late_tolerance_s,
        help="late ticks within this many seconds are kept (default %(default)s)",
    )
    parser.add_argument(
        "--max-gap-s",
        type=_finite,
        default=defaults.max_gap_s,
        help="feature windows restart after a longer gap (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="run by (product, day) partition on a local Dask cluster of this many worker "
        "processes (or on the cluster CRYPTOVOL_DASK_ADDRESS names); the rows are the same",
    )
    parser.add_argument(
        "--skip-contracts",
        action="store_true",
        help="backfill without checking the recordings against the raw contract (says so)",
    )


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from data_contracts.gate import NothingAdmitted
    from tasks.io.files import WriteError
    from tasks.settings import get_settings
    from tasks.stages.backfill import NoRows, run_backfill
    from tasks.stages.backfill_partitions import run_backfill_partitioned

    if args.out is not None:
        out = Path(args.out)
        problem = output_problem(out, file=out.suffix == ".parquet")
        if problem is not None:
            log.error("--out %s: %s", args.out, problem)
            return 2
    config = EngineConfig(late_tolerance_s=args.late_tolerance_s, max_gap_s=args.max_gap_s)
    if args.skip_contracts:
        print("data contracts skipped (--skip-contracts): the recordings are not checked")
    settings = get_settings()
    on_dask = bool(args.workers or settings.dask_address)
    try:
        if on_dask:
            stats = run_backfill_partitioned(
                settings,
                args.inputs or None,
                args.out,
                config,
                check_contracts=not args.skip_contracts,
                workers=args.workers,
            )
        else:
            stats = run_backfill(
                settings,
                args.inputs or None,
                args.out,
                config,
                check_contracts=not args.skip_contracts,
            )
    except (FileNotFoundError, NothingAdmitted) as exc:
        log.error("%s", exc)
        return 2
    except WriteError as exc:  # a full disk, a read-only data dir: nothing half-written
        log.error("%s", exc)
        return 1
    except NoRows as exc:
        print(json.dumps(exc.stats.as_dict(), indent=2))
        log.error("%s", exc)
        return 1
    print(json.dumps(stats.as_dict(), indent=2))
    return 0
