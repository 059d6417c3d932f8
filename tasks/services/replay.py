"""Replay: recordings (plain or gzip NDJSON of exchange envelopes) onto ``ticks.raw``.

Lines from all files are merged in event-time order, so a multi-product archive replays as it was
received; a file is opened only when the replay reaches its first timestamp, so an archive of many
files never holds more than the overlapping ones open. Each ticker becomes the same
:class:`~tasks.core.messages.RawTick` record :func:`tasks.io.recordings.read_ticks` gives (source =
file name, received_at = the recorded timestamp). Other channels are skipped; bad lines are
counted, the first few reported with file and line number, and never stop the run.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.messages import TICKER_CHANNEL, ticks_from_envelope
from tasks.core.timeutil import TimestampError, format_ts, parse_ts
from tasks.io.kafka import ensure_topics, make_producer
from tasks.io.publisher import TickPublisher
from tasks.io.recordings import (
    BadLine,
    RecordedEnvelope,
    expand_inputs,
    read_envelopes,
    source_name,
)
from tasks.settings import Settings

log = logging.getLogger(__name__)

Line = RecordedEnvelope | BadLine


def _file_lines(path: Path) -> Iterator[tuple[float, Line]]:
    """(event time, line) for one file; a bad line carries the time of the last good one."""
    last = -math.inf
    for item in read_envelopes([path]):
        if isinstance(item, RecordedEnvelope):
            try:
                last = parse_ts(item.envelope.timestamp)
            except TimestampError as exc:
                item = BadLine(item.path, item.lineno, f"timestamp: {exc}", "")
        yield last, item


def _first_time(path: Path) -> float:
    for ts, _ in _file_lines(path):
        if ts > -math.inf:
            return ts
    return -math.inf


def merge_by_time(paths: Iterable[Path]) -> Iterator[tuple[float, Line]]:
    """Every line of every file, in event-time order (ties: file order, then line order)."""
    pending = sorted((_first_time(p), i, p) for i, p in enumerate(paths))
    heap: list[tuple[float, int, int, Line, Iterator[tuple[float, Line]]]] = []
    order = itertools.count()

    def push(index: int, lines: Iterator[tuple[float, Line]]) -> None:
        for ts, item in itertools.islice(lines, 1):
            heapq.heappush(heap, (ts, index, next(order), item, lines))

    position = 0
    while position < len(pending) or heap:
        while position < len(pending) and (not heap or pending[position][0] <= heap[0][0]):
            _, index, path = pending[position]
            push(index, _file_lines(path))
            position += 1
        if not heap:
            continue
        ts, index, _, item, lines = heapq.heappop(heap)
        yield ts, item
        push(index, lines)


@dataclass
class ReplayStats:
    files: int = 0
    messages: int = 0  # envelopes read (ticker and other channels)
    tickers: int = 0  # records produced
    skipped: int = 0  # envelopes of other channels
    malformed: int = 0  # lines that are not valid envelopes or tickers
    bad_lines: list[str] = field(default_factory=list)  # the first few, as file:line: error
    products: Counter = field(default_factory=Counter)
    first_ts: float | None = None
    last_ts: float | None = None
    seconds: float = 0.0
    delivered: int = 0
    publish_errors: int = 0
    undelivered: int = 0

    def summary(self) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-9)
        span = (self.last_ts - self.first_ts) if self.first_ts is not None else 0.0
        return {
            "files": self.files,
            "messages": self.messages,
            "tickers": self.tickers,
            "skipped": self.skipped,
            "malformed": self.malformed,
            "products": dict(sorted(self.products.items())),
            "first": format_ts(self.first_ts) if self.first_ts is not None else None,
            "last": format_ts(self.last_ts) if self.last_ts is not None else None,
            "span_s": round(span, 3),
            "seconds": round(self.seconds, 3),
            "messages_per_s": round(self.messages / seconds, 1),
            "tickers_per_s": round(self.tickers / seconds, 1),
            "delivered": self.delivered,
            "publish_errors": self.publish_errors,
            "undelivered": self.undelivered,
            "bad_lines": self.bad_lines,
        }


def parse_speed(text: str) -> float | None:
    """``--speed`` values: a positive factor, or ``max`` (None) for as fast as possible."""
    if text.strip().lower() == "max":
        return None
    speed = float(text)
    if not speed > 0 or math.isinf(speed):
        raise ValueError(f"speed must be a positive number or 'max', not {text!r}")
    return speed


class _Pacer:
    """Sleeps so that event time advances ``speed`` times faster than wall time."""

    def __init__(self, speed: float | None, publisher: TickPublisher) -> None:
        self.speed = speed
        self.publisher = publisher
        self.anchor: tuple[float, float] | None = None  # (event time, monotonic time)
        self.last = -math.inf

    def wait_until(self, ts: float) -> None:
        if self.speed is None:
            return
        if self.anchor is None or ts < self.last:
            self.anchor = (ts, time.monotonic())
        self.last = ts
        event0, wall0 = self.anchor
        target = wall0 + (ts - event0) / self.speed
        while (delay := target - time.monotonic()) > 0:
            self.publisher.poll(delay)  # serves delivery reports; returns early when it does


def run_replay(
    settings: Settings,
    inputs: Iterable[str | Path],
    speed: float | None = 1.0,
    *,
    max_reported: int = 10,
    flush_timeout_s: float = 30.0,
) -> ReplayStats:
    """Replay files (or directories of them) onto ``settings.raw_topic``.

    ``speed`` multiplies the recorded pace (2.0 = twice as fast); None replays as fast as
    possible. Raises :class:`~tasks.io.kafka.BrokerUnavailable` when no broker answers.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive, or None for as fast as possible")
    files = expand_inputs(inputs)
    ensure_topics(settings)
    publisher = TickPublisher(make_producer(settings), settings.raw_topic)
    pacer = _Pacer(speed, publisher)
    stats = ReplayStats(files=len(files))
    sources = {str(path): source_name(path) for path in files}
    started = time.monotonic()
    try:
        for ts, item in merge_by_time(files):
            if isinstance(item, BadLine):
                _report(stats, item, max_reported)
                continue
            envelope = item.envelope
            stats.messages += 1
            if envelope.channel != TICKER_CHANNEL:
                stats.skipped += 1
                continue
            errors: list[str] = []
            ticks = ticks_from_envelope(
                envelope, received_at=envelope.timestamp, source=sources[item.path], errors=errors
            )
            for error in errors:
                _report(stats, BadLine(item.path, item.lineno, error, ""), max_reported)
            pacer.wait_until(ts)
            for tick in ticks:
                publisher.publish(tick)
                stats.products[tick.product_id] += 1
            stats.tickers += len(ticks)
            stats.first_ts = ts if stats.first_ts is None else min(stats.first_ts, ts)
            stats.last_ts = ts if stats.last_ts is None else max(stats.last_ts, ts)
            publisher.poll(0)
    finally:
        publisher.flush(flush_timeout_s)
        stats.seconds = time.monotonic() - started
        stats.delivered = publisher.stats.delivered
        stats.publish_errors = publisher.stats.errors
        stats.undelivered = publisher.undelivered
    if stats.malformed > max_reported:
        log.warning("%d more malformed line(s) not shown", stats.malformed - max_reported)
    return stats


def _report(stats: ReplayStats, bad: BadLine, max_reported: int) -> None:
    stats.malformed += 1
    if stats.malformed <= max_reported:
        stats.bad_lines.append(bad.describe())
        log.warning("malformed line %s", bad.describe())
