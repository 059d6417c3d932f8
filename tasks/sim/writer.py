"""Write simulator output as recordings: gzip NDJSON, one envelope per line, one file per hour.

The files are byte-identical for the same products, seed, start and length: envelopes are
serialized compactly in a fixed key order and the gzip header carries no file name or time.
All files of one run are one simulated connection, so ``sequence_num`` runs on across files, as it
does when a recorder rotates its file on a live connection. Each file is written under a
temporary name and renamed when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tasks.sim.simulator import (
    DEFAULT_START,
    ModelParams,
    regime_ticks,
    ticker_envelope,
    timed_envelopes,
)


@dataclass
class SimSummary:
    files: list[Path] = field(default_factory=list)
    messages: int = 0
    heartbeats: int = 0
    tickers: Counter[str] = field(default_factory=Counter)
    first_ts: str = ""
    last_ts: str = ""


def recording_name(file_start_s: float, seed: int) -> str:
    """``SIM_<yyyymmdd_HHMMSS of the file's first second>_seed<seed>.ndjson.gz``."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(int(file_start_s)))
    return f"SIM_{stamp}_seed{seed}.ndjson.gz"


class _PartFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".part")
        self._raw = self.tmp.open("wb")
        self._gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6
        )

    def write(self, data: bytes) -> None:
        self._gz.write(data)

    def commit(self) -> None:
        self._gz.close()
        self._raw.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self._gz.close()
        self._raw.close()
        self.tmp.unlink(missing_ok=True)


def write_recordings(
    out_dir: str | Path,
    products: Sequence[str] = ("BTC-USD", "ETH-USD"),
    seed: int = 0,
    start: float = DEFAULT_START,
    minutes: float = 60.0,
    file_seconds: int = 3600,
    params: ModelParams | None = None,
) -> SimSummary:
    """Simulate ``minutes`` of event time into ``out_dir``, a new file every ``file_seconds``."""
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    if file_seconds <= 0:
        raise ValueError("file_seconds must be positive")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = SimSummary()
    start_us = round(start * 1_000_000)

    def placed() -> Iterator[tuple[Path | None, dict]]:
        current_index = -1
        for us, envelope in timed_envelopes(products, seed, start, minutes, params):
            index = (us - start_us) // (file_seconds * 1_000_000)
            if index != current_index:
                current_index = index
                yield out / recording_name(start + index * file_seconds, seed), envelope
            else:
                yield None, envelope

    _write_files(placed(), summary)
    return summary


def write_market(
    out_dir: str | Path,
    products: Sequence[str],
    seed: int = 0,
    start: float = DEFAULT_START,
    days: int = 1,
    workers: int = 1,
    params: ModelParams | None = None,
) -> SimSummary:
    """Simulate ``days`` whole days of every product, each day in its own regime
    (:func:`tasks.sim.simulator.regime_ticks`), laid out as the raw archive is: one folder per
    product, a file per product and hour (``<product>/<product>_<yyyymmdd_HHMMSS>_seed<seed>
    .ndjson.gz``), each file its own sequence space. Products are written by ``workers``
    processes at once; the files are the same whatever ``workers`` is."""
    if days < 1:
        raise ValueError("days must be at least 1")
    if len(set(products)) != len(products):
        raise ValueError(f"duplicate products in {list(products)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out, product, seed, start, days, params) for product in products]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_write_product, *zip(*jobs, strict=True)))
    else:
        parts = [_write_product(*job) for job in jobs]
    summary = SimSummary()
    for part in parts:
        summary.files.extend(part.files)
        summary.messages += part.messages
        summary.tickers.update(part.tickers)
        summary.first_ts = min(filter(None, (summary.first_ts, part.first_ts)), default="")
        summary.last_ts = max(summary.last_ts, part.last_ts)
    return summary


def _write_product(
    out: Path, product: str, seed: int, start: float, days: int, params: ModelParams | None
) -> SimSummary:
    summary = SimSummary()
    folder = out / product
    folder.mkdir(exist_ok=True)
    start_us = round(start * 1_000_000)

    def placed() -> Iterator[tuple[Path | None, dict]]:
        current_hour, seq = -1, 0
        for us, ticker in regime_ticks(product, seed, start, days, params):
            hour = (us - start_us) // 3_600_000_000
            path = None
            if hour != current_hour:  # a file per hour, each its own sequence space
                stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(int(start) + hour * 3600))
                path = folder / f"{product}_{stamp}_seed{seed}.ndjson.gz"
                current_hour, seq = hour, 0
            yield path, ticker_envelope(us, seq, "update", ticker)
            seq += 1

    _write_files(placed(), summary)
    return summary


def _write_files(placed: Iterable[tuple[Path | None, dict]], summary: SimSummary) -> None:
    """Write envelopes in order, each file whole (:class:`_PartFile`): an envelope that comes with
    a path starts that file, the one before it committed; a failure discards the open file."""
    current: _PartFile | None = None
    lines: list[bytes] = []
    try:
        for path, envelope in placed:
            if path is not None:
                if current is not None:
                    current.write(b"".join(lines))
                    lines.clear()
                    current.commit()
                current = _PartFile(path)
                summary.files.append(path)
            lines.append(json.dumps(envelope, separators=(",", ":")).encode() + b"\n")
            if len(lines) >= 4096:
                current.write(b"".join(lines))
                lines.clear()
            _count(summary, envelope)
        if current is not None:
            current.write(b"".join(lines))
            current.commit()
            current = None
    finally:
        if current is not None:
            current.discard()


def _count(summary: SimSummary, envelope: dict) -> None:
    summary.messages += 1
    summary.first_ts = summary.first_ts or envelope["timestamp"]
    summary.last_ts = envelope["timestamp"]
    if envelope["channel"] == "heartbeats":
        summary.heartbeats += 1
        return
    for event in envelope["events"]:
        for ticker in event["tickers"]:
            summary.tickers[ticker["product_id"]] += 1
