"""Argument types shared by the commands that listen on a port or take a count."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def port_number(text: str) -> int:
    """A TCP port, 1-65535."""
    port = _integer(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, not {port}")
    return port


def port_or_zero(text: str) -> int:
    """A TCP port, or 0 for none."""
    port = _integer(text)
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1-65535 (or 0 for none), not {port}")
    return port


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above zero (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text!r}")
    return value


def output_problem(path: Path, *, file: bool) -> str | None:
    """Why ``path`` cannot be written as a file (``file``) or a folder, or None.

    Catches what would otherwise fail deep in a writer: a folder where a file goes, a file where
    a folder goes, or a file in the way of a parent folder.
    """
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    if file and path.is_dir():
        return f"{path} is a directory, not a file"
    if not file and path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    return None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
