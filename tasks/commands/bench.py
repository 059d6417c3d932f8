"""``cryptovol bench``: run the benchmark scripts in ``benchmarks/`` and print their figures.

Each script is standalone and prints one JSON object; running them as separate processes keeps one
benchmark's memory and threads from skewing the next.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object of all figures")


def available() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def run(args: argparse.Namespace) -> int:
    scripts = available()
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(scripts)}")
        return 2
    results: dict[str, object] = {}
    failed = False
    for name in args.names or list(scripts):
        if not args.json:
            print(f"== {name}", flush=True)
        proc = subprocess.run([sys.executable, str(scripts[name])], capture_output=True, text=True)
        figures = _last_json_object(proc.stdout) if proc.returncode == 0 else None
        if figures is None:
            failed = True
            results[name] = {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
        else:
            results[name] = figures
        if not args.json:
            print(json.dumps(results[name], indent=2), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _last_json_object(text: str) -> dict | None:
    """The JSON object a script printed last (scripts may log lines before it)."""
    start = text.rfind("\n{")
    candidates = [text, text[start + 1 :]] if start >= 0 else [text]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None
