"""Recordings written by hand for the contract tests: Advanced Trade envelopes, strings as sent.

Ticks come 1.05 to 1.6 s apart, so every tick is the latest one of at least one second of the
backfill's 1-s grid, and each tick's record id can be looked for in a training set.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

START = datetime(2025, 12, 6, 5, 45, 36, 37320, tzinfo=UTC)
HEARTBEAT_EVERY = 50  # a heartbeat envelope between tickers, sharing the sequence space


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ticker_envelopes(n: int = 300, *, seed: int = 0, product: str = "BTC-USD") -> list[dict]:
    """``n`` ticker envelopes (and a heartbeat every 50), sequence numbers 0, 1, 2..."""
    rng = random.Random(seed)
    price = 89565.0
    moment = START
    envelopes: list[dict[str, Any]] = []
    for i in range(n):
        if i and i % HEARTBEAT_EVERY == 0:
            envelopes.append(
                {
                    "channel": "heartbeats",
                    "client_id": "",
                    "timestamp": stamp(moment),
                    "sequence_num": len(envelopes),
                    "events": [{"current_time": stamp(moment), "heartbeat_counter": i}],
                }
            )
        moment += timedelta(seconds=rng.uniform(1.05, 1.6))
        price = round(price * (1 + rng.gauss(0, 2e-5)), 2)
        half_spread = rng.choice((0.005, 0.005, 0.5, 1.5))
        ticker = {
            "type": "ticker",
            "product_id": product,
            "price": f"{price:.2f}",
            "volume_24_h": f"{8103.26846767 + i * 0.01:.8f}",
            "low_24_h": "88099.05",
            "high_24_h": "92533.29",
            "low_52_w": "74420.69",
            "high_52_w": "126296",
            "price_percent_chg_24_h": "-2.70171266278031",
            "best_bid": f"{price - half_spread:.2f}",
            "best_ask": f"{price + half_spread:.2f}",
            "best_bid_quantity": f"{rng.uniform(0.001, 0.5):.8f}",
            "best_ask_quantity": f"{rng.uniform(0.001, 0.5):.8f}",
        }
        envelopes.append(
            {
                "channel": "ticker",
                "client_id": "",
                "timestamp": stamp(moment),
                "sequence_num": len(envelopes),
                "events": [{"type": "update", "tickers": [ticker]}],
            }
        )
    return envelopes


def write_recording(path: Path, lines: list[dict | str]) -> Path:
    """One line per item: dicts as compact JSON, strings as they are (to write broken lines)."""
    text = "".join(
        (json.dumps(x, separators=(",", ":")) if isinstance(x, dict) else x) + "\n" for x in lines
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def recording(tmp_path) -> Callable[..., Path]:
    """``recording(name, lines=None, seed=0, n=300)``: a recording file under tmp_path."""

    def make(name: str, lines: list[dict | str] | None = None, *, seed: int = 0, n: int = 300):
        return write_recording(tmp_path / "rec" / name, lines or ticker_envelopes(n, seed=seed))

    return make


@pytest.fixture(scope="session")
def envelopes() -> Callable[..., list[dict]]:
    """``envelopes(n=300, seed=0, product="BTC-USD")``: fresh ticker envelopes to corrupt."""
    return ticker_envelopes


@pytest.fixture(scope="session")
def write_lines() -> Callable[[Path, list[dict | str]], Path]:
    """``write_lines(path, lines)``: a recording at any path (gzip when it ends in .gz)."""
    return write_recording
