"""``cryptovol promote``: move the champion alias to a version whose gates passed."""

from __future__ import annotations

import argparse
import json

from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "version", nargs="?", default=None, help="model version (default: challenger)"
    )
    parser.add_argument(
        "--force", action="store_true", help="promote without a passing gate decision"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="PATH",
        help="validate the challenger on this data first (its gates decide the promotion)",
    )
    parser.add_argument("--why", default=None, help="reason recorded on the version")
    parser.add_argument("--who", default=None, help="who promotes (default: the OS user)")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from tasks.io.registry import RegistryError, registry_error
    from tasks.stages.promote import promote

    settings = get_settings()
    out: dict = {}
    try:
        if args.data:
            if args.version is not None:
                print("--data validates the challenger: give no VERSION with it")
                return 2
            from tasks.stages.validate import validate_challenger

            outcome = validate_challenger(settings, args.data)
            out["validation"] = outcome.to_dict()
            if not args.json:
                print(f"validation of v{outcome.challenger_version}: {outcome.decision.decision}")
                print(f"  {outcome.decision.reason()}")
                print(f"  report: {outcome.report_paths['markdown']}")
        change = promote(settings, args.version, force=args.force, who=args.who, why=args.why)
    except (RegistryError, MlflowException) as exc:
        if isinstance(exc, MlflowException):  # a failure midway: the server gone, say
            exc = registry_error(exc, settings.tracking_uri, "the promotion")
        if args.json:
            print(json.dumps({**out, "error": str(exc)}, indent=2, default=str))
        else:
            print(f"not promoted: {exc}")
        return 1
    out["change"] = change.to_dict()
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    elif change.action == "none":
        print(f"version {change.champion} is already the champion")
    else:
        print(
            f"champion: version {change.champion} (was {change.previous or 'none'}); baseline "
            f"champion {change.baseline_champion or 'unchanged'}; by {change.who}: {change.why}"
        )
    return 0
