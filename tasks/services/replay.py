"""Replay: recordings (plain or gzip NDJSON of exchange envelopes) onto ``ticks.raw``.

Lines from all files are merged in receive-time order
(:func:`tasks.io.recordings.merge_by_receive_time`), so a multi-product archive replays as it was
received, and a line stamped far from its neighbours neither stalls the merge nor the pacing. Each
ticker becomes the same :class:`~tasks.core.messages.RawTick` record
:func:`tasks.io.recordings.read_ticks` gives (source = file name, received_at = the estimated
receive time). Other channels are skipped; bad lines (a poison line included) are counted, the
first few reported with file and line number, and never stop the run.

Delivery: every record is acknowledged, or counted undelivered. A record over the broker's
message size is logged with its file and line, counted in ``too_large`` (and undelivered), and the
rest is sent. A broker that restarts without its state mid-replay has its topics created again
and the records it had not acknowledged sent again (:class:`~tasks.io.publisher.TickPublisher`);
one that stays away stops the replay with a clear error after
:data:`~tasks.io.kafka.BROKER_DOWN_TIMEOUT_S`, its records counted undelivered.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.messages import TICKER_CHANNEL, preview
from tasks.core.timeutil import format_ts
from tasks.io.kafka import BrokerUnavailable, ensure_topics
from tasks.io.publisher import TickPublisher, open_publisher
from tasks.io.recordings import (
    BadLine,
    envelope_ticks,
    expand_inputs,
    merge_by_receive_time,
    source_name,
)
from tasks.settings import Settings

log = logging.getLogger(__name__)


class NothingToReplay(ValueError):
    """The inputs hold no recording, or no line of them is an exchange message."""


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
    undelivered: int = 0  # too large, given up, or still in flight at the end
    too_large: int = 0  # records over the broker's message size: never sent (logged file:line)
    broker_restarts: int = 0
    resent: int = 0  # records sent again to a broker that had restarted
    acked_before_restart: int = 0  # acknowledged by a broker that has since lost them
    error: str | None = None  # why the replay stopped early

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
            "too_large": self.too_large,
            "broker_restarts": self.broker_restarts,
            "resent": self.resent,
            "acked_before_restart": self.acked_before_restart,
            "error": self.error,
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
    possible. Raises :class:`~tasks.io.kafka.BrokerUnavailable` when no broker answers at the
    start and :class:`NothingToReplay` when the inputs hold no recording; a broker lost for good
    midway ends the replay with ``stats.error`` set and the rest counted undelivered.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive, or None for as fast as possible")
    inputs = list(inputs)
    files = expand_inputs(inputs)
    if not files:
        raise NothingToReplay(
            f"no recordings (*.ndjson, *.ndjson.gz) in {', '.join(map(str, inputs))}"
        )
    if all(path.stat().st_size == 0 for path in files):
        raise NothingToReplay(f"every recording is empty: {', '.join(map(str, files))}")
    ensure_topics(settings)
    publisher = open_publisher(settings)
    pacer = _Pacer(speed, publisher)
    stats = ReplayStats(files=len(files))
    sources = {str(path): source_name(path) for path in files}
    started = time.monotonic()
    try:
        for ts, item in merge_by_receive_time(files):
            if isinstance(item, BadLine):
                _report(stats, item, max_reported)
                continue
            if item.received != item.received:  # its timestamp does not parse
                error = f"timestamp: unparseable {preview(item.envelope.timestamp)}"
                _report(stats, BadLine(item.path, item.lineno, error, ""), max_reported)
                continue
            stats.messages += 1
            if item.envelope.channel != TICKER_CHANNEL:
                stats.skipped += 1
                continue
            errors: list[str] = []
            try:
                ticks = envelope_ticks(item, sources[item.path], errors)
            except Exception as exc:  # a poison line is that line's problem
                errors.append(f"unreadable envelope: {exc!r}")
                ticks = []
            for error in errors:
                _report(stats, BadLine(item.path, item.lineno, error, ""), max_reported)
            pacer.wait_until(ts)
            for tick in ticks:
                try:
                    publisher.publish(tick, where=f"{item.path}:{item.lineno}")
                except (ValueError, RecursionError) as exc:  # a ticker json cannot write back
                    _report(
                        stats, BadLine(item.path, item.lineno, f"ticker: {exc!r}", ""), max_reported
                    )
                    continue
                stats.products[tick.product_id] += 1
                stats.tickers += 1
            if ts == ts and ts > -math.inf:
                stats.first_ts = ts if stats.first_ts is None else min(stats.first_ts, ts)
                stats.last_ts = ts if stats.last_ts is None else max(stats.last_ts, ts)
            publisher.poll(0)
    except BrokerUnavailable as exc:
        stats.error = str(exc)
        log.error("%s", exc)
    finally:
        publisher.flush(flush_timeout_s if stats.error is None else 0.0)
        stats.seconds = time.monotonic() - started
        p = publisher.stats
        stats.delivered = p.delivered
        stats.publish_errors = p.errors
        stats.undelivered = publisher.undelivered
        stats.too_large = p.refused
        stats.broker_restarts = p.broker_restarts
        stats.resent = p.resent
        stats.acked_before_restart = p.acked_before_restart
    if stats.malformed > max_reported:
        log.warning("%d more malformed line(s) not shown", stats.malformed - max_reported)
    if stats.messages == 0 and stats.error is None:
        raise NothingToReplay(
            f"no exchange message in {len(files)} recording(s)"
            + (
                f" ({stats.malformed} bad line(s), e.g. {stats.bad_lines[0]})"
                if stats.bad_lines
                else ""
            )
        )
    return stats


def _report(stats: ReplayStats, bad: BadLine, max_reported: int) -> None:
    stats.malformed += 1
    if stats.malformed <= max_reported:
        stats.bad_lines.append(bad.describe())
        log.warning("malformed line %s", bad.describe())
