"""Argument types shared by the commands that listen on a port or take a count."""

from __future__ import annotations

import argparse
import math


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


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
