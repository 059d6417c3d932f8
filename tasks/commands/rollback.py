"""``cryptovol rollback``: move the champion alias back to the previous champion."""

from __future__ import annotations

import argparse
import json

from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--why", default=None, help="reason recorded on both versions")
    parser.add_argument("--who", default=None, help="who rolls back (default: the OS user)")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from tasks.io.registry import RegistryError, registry_error
    from tasks.stages.promote import rollback

    settings = get_settings()
    try:
        change = rollback(settings, who=args.who, why=args.why)
    except (RegistryError, MlflowException) as exc:
        if isinstance(exc, MlflowException):  # a failure midway: the server gone, say
            exc = registry_error(exc, settings.tracking_uri, "the rollback")
        print(json.dumps({"error": str(exc)}) if args.json else f"no rollback: {exc}")
        return 1
    if args.json:
        print(json.dumps(change.to_dict(), indent=2))
    else:
        print(
            f"champion: version {change.champion} (was {change.previous}); baseline champion "
            f"{change.baseline_champion or 'unchanged'}; by {change.who}: {change.why}"
        )
    return 0
