"""``cryptovol bench``: run the benchmark scripts in ``benchmarks/`` and print their figures.

Each script is standalone and prints one JSON object; running them as separate processes keeps one
benchmark's memory and threads from skewing the next.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object of all figures")
    parser.add_argument(
        "--args",
        default="",
        help="arguments for the named scripts, e.g. bench scale --args '--products 4 --days 2'",
    )


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
        returncode, stdout, stderr, peak_rss_mb = _run_measured(
            scripts[name], shlex.split(args.args)
        )
        figures = _last_json_object(stdout) if returncode == 0 else None
        if figures is None:
            failed = True
            results[name] = {"error": (stderr or stdout).strip()[-2000:]}
        else:
            results[name] = {**figures, "peak_rss_mb": peak_rss_mb}
        if not args.json:
            print(json.dumps(results[name], indent=2), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _run_measured(script: Path, extra: list[str]) -> tuple[int, str, str, float]:
    """Run a script; its exit code, stdout, stderr and peak resident memory (MiB, from wait4)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), *extra], stdout=subprocess.PIPE, stderr=err, text=True
        )
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, stdout, err.read(), round(usage.ru_maxrss / 1024, 1)


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
