"""``cryptovol status``: each part of the local stack, its URL and its health."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace) -> int:
    from tasks.settings import get_settings
    from tasks.stack.up import status

    rows = status(get_settings())
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            health = {True: "healthy", False: "DOWN", None: "external"}[row["healthy"]]
            pid = f"pid {row['pid']}" if row["pid"] else ""
            print(f"{row['name']:<12} {health:<8} {row['url']:<40} {pid}")
    managed = [r for r in rows if r["managed"]]
    return 0 if managed and all(r["healthy"] for r in managed) else 1
