"""Live capture: exchange WebSocket -> ``ticks.raw`` (one record per ticker) + the raw archive.

Every message the exchange sends is archived unchanged (:mod:`tasks.io.archive`); every ticker in a
``ticker`` message becomes one :class:`~tasks.core.messages.RawTick` record keyed by product id,
published through :class:`~tasks.io.publisher.TickPublisher` (idempotent, ``acks=all``, failures
retried and counted). Prometheus metrics are read from the live counters at scrape time.

Whatever goes wrong with one message (bad JSON, nesting too deep, a ticker that cannot be
written back) is counted as malformed; the message is still archived as received. A broker that
restarts without its state gets its topics back and the records it had not acknowledged sent
again; one away for longer than :data:`~tasks.io.kafka.BROKER_DOWN_TIMEOUT_S` ends the capture
with ``error`` set, everything received until then archived. So does a capture that never
connected to the exchange, and one whose archive cannot be written (a full disk, a data dir that
is a file, a read-only mount): the archive is the durable copy, so capture stops at the first
failed write rather than go on publishing what it cannot keep, and ``archive_lines`` counts only
lines that reached the file.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from tasks.core.messages import TICKER_CHANNEL, ticks_from_envelope
from tasks.core.timeutil import format_ts
from tasks.io.archive import CONTROL_KEY, ArchiveWriteError, ArchiveWriter, archive_key
from tasks.io.exchange_client import AdvancedTradeClient, ClientStats, Received
from tasks.io.kafka import BrokerUnavailable, ensure_topics
from tasks.io.publisher import TickPublisher, open_publisher
from tasks.settings import Settings

log = logging.getLogger(__name__)

MAX_REPORTED = 10  # malformed messages logged in full; the rest are only counted


@dataclass
class CaptureStats:
    run_id: str
    seconds: float = 0.0
    messages: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    tickers: int = 0
    by_product: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    connections: int = 0
    reconnects: int = 0
    idle_timeouts: int = 0
    unconfirmed: int = 0
    gaps: int = 0
    missing: int = 0
    reconnect_seconds_max: float | None = None
    published: int = 0
    delivered: int = 0
    publish_errors: int = 0
    retried: int = 0
    undelivered: int = 0
    archive_lines: int = 0
    archive_files: int = 0
    broker_restarts: int = 0
    resent: int = 0  # records sent again to a broker that had restarted
    acked_before_restart: int = 0  # acknowledged by a broker that has since lost them
    error: str | None = None  # why the capture failed (no connection, no broker, no archive)

    def summary(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Capture:
    """The produce loop: what happens to each message the client hands over."""

    def __init__(self, publisher: TickPublisher, archive: ArchiveWriter) -> None:
        self.publisher = publisher
        self.archive = archive
        self.by_product: Counter = Counter()
        self.malformed = 0
        self._connection: str | None = None

    def on_message(self, msg: Received) -> None:
        if msg.connection != self._connection:
            if self._connection is not None:
                self.archive.close_source(self._connection)
            self._connection = msg.connection
        envelope = msg.envelope
        try:
            key = archive_key(envelope)
        except Exception:  # a shape archive_key cannot read: kept with the control messages
            key = CONTROL_KEY
        self.archive.write(msg.text, key, msg.connection, msg.received_at)
        if envelope is not None and envelope.channel == TICKER_CHANNEL:
            errors: list[str] = []
            try:
                ticks = ticks_from_envelope(
                    envelope,
                    received_at=format_ts(msg.received_at),
                    source=msg.connection,
                    errors=errors,
                    clock_offset_s=msg.clock_offset_s,
                )
            except Exception as exc:  # a poison message is its own problem
                errors.append(f"unreadable envelope: {exc!r}"[:300])
                ticks = []
            for tick in ticks:
                try:
                    self.publisher.publish(tick)
                except (ValueError, RecursionError) as exc:  # cannot be written as JSON again
                    errors.append(f"ticker {tick.index}: {exc!r}"[:300])
                    continue
                self.by_product[tick.product_id] += 1
            for error in errors:
                self.malformed += 1
                if self.malformed <= MAX_REPORTED:
                    log.warning(
                        "%s: malformed ticker (kept in the archive): %s", msg.connection, error
                    )
        self.publisher.poll(0)


class _CaptureCollector:
    """Prometheus view of the live counters, read at scrape time."""

    def __init__(self, client: ClientStats, capture: _Capture, publisher: TickPublisher) -> None:
        self.client = client
        self.capture = capture
        self.publisher = publisher

    def collect(self) -> Iterator[Any]:
        c, p = self.client, self.publisher.stats
        messages = CounterMetricFamily(
            "cryptovol_capture_messages", "Exchange messages received", labels=["channel"]
        )
        for channel, count in sorted(c.by_channel.items()):
            messages.add_metric([channel], count)
        yield messages
        tickers = CounterMetricFamily(
            "cryptovol_capture_tickers", "Tickers published to ticks.raw", labels=["product"]
        )
        for product, count in sorted(self.capture.by_product.items()):
            tickers.add_metric([product], count)
        yield tickers
        singles = [
            ("reconnects", "Reconnect attempts", c.reconnects),
            ("sequence_gaps", "Sequence number gaps seen", c.gaps),
            ("missing_messages", "Sequence numbers skipped over in gaps", c.missing),
            ("idle_timeouts", "Connections given up for silence", c.idle_timeouts),
            ("unconfirmed_subscriptions", "Subscriptions not confirmed in time", c.unconfirmed),
            (
                "malformed_messages",
                "Ticker messages that could not be parsed",
                self.capture.malformed,
            ),
            ("publish_errors", "Failed delivery reports from Kafka", p.errors),
            ("undelivered", "Records given up on after retries", p.failed),
        ]
        for name, doc, value in singles:
            yield CounterMetricFamily(f"cryptovol_capture_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "cryptovol_capture_seconds_since_last_message",
            "Seconds since the last exchange message (NaN before the first)",
            value=c.seconds_since_last_message(),
        )
        yield GaugeMetricFamily(
            "cryptovol_capture_in_flight",
            "Records awaiting delivery",
            value=self.publisher.in_flight,
        )


def run_capture(
    settings: Settings,
    *,
    url: str | None = None,
    products: Sequence[str] | None = None,
    minutes: float | None = None,
    stop_event: threading.Event | None = None,
    metrics_port: int | None = None,
    install_signal_handlers: bool = False,
    flush_timeout_s: float = 30.0,
    client: AdvancedTradeClient | None = None,
) -> CaptureStats:
    """Capture until ``minutes`` pass, ``stop_event`` is set or (with signal handlers) SIGINT/TERM.

    ``metrics_port`` None uses ``settings.capture_metrics_port``; 0 serves no metrics. Raises
    :class:`~tasks.io.kafka.BrokerUnavailable` within seconds when no broker answers, and
    :class:`~tasks.io.archive.ArchiveWriteError` at once when the archive folder cannot be made;
    a write that fails later ends the capture with ``error`` set.
    """
    ensure_topics(settings)  # fails fast with a hint when no broker answers
    archive = ArchiveWriter(settings.archive_dir)
    archive.prepare()  # an unusable data dir fails here, before anything is connected
    client = client or AdvancedTradeClient(
        url or settings.ws_url,
        products or settings.products,
        idle_timeout_s=settings.idle_timeout_s,
        reconnect_initial_s=settings.reconnect_initial_s,
        reconnect_max_s=settings.reconnect_max_s,
    )
    publisher = open_publisher(settings)
    capture = _Capture(publisher, archive)
    port = settings.capture_metrics_port if metrics_port is None else metrics_port
    http = None
    error = None
    started = time.monotonic()
    try:
        if port:
            registry = CollectorRegistry(auto_describe=True)
            registry.register(_CaptureCollector(client.stats, capture, publisher))
            http, _ = start_http_server(port, addr=settings.metrics_host, registry=registry)
            log.info("capture metrics on http://%s:%d/metrics", settings.metrics_host, port)
        log.info(
            "capturing %s from %s into %s (run %s)",
            ",".join(client.products),
            client.url,
            settings.raw_topic,
            client.run_id,
        )
        asyncio.run(_run(client, capture, minutes, stop_event, install_signal_handlers))
    except (BrokerUnavailable, ArchiveWriteError) as exc:
        error = str(exc)
        log.error("%s", exc)
    finally:
        try:
            archive.close()
        except ArchiveWriteError as exc:
            if error is None:
                error = str(exc)
                log.error("%s", exc)
        publisher.flush(flush_timeout_s)
        if http is not None:
            http.shutdown()
            http.server_close()
    stats = _stats(client, capture, publisher, archive, time.monotonic() - started)
    if error is None and not stats.connections:
        last = client.stats.last_connect_error or "no attempt finished"
        error = (
            f"never connected to {client.url} in {stats.seconds:.0f} s "
            f"({client.stats.failed_connects} failed attempt(s); last: {last})"
        )
        log.error("%s", error)
    stats.error = error
    return stats


async def _run(
    client: AdvancedTradeClient,
    capture: _Capture,
    minutes: float | None,
    stop_event: threading.Event | None,
    install_signal_handlers: bool,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    if minutes is not None:
        loop.call_later(minutes * 60, stop.set)
    watcher = asyncio.create_task(_watch(stop_event, stop)) if stop_event is not None else None
    try:
        await client.run(capture.on_message, stop)
    finally:
        if watcher is not None:
            watcher.cancel()


async def _watch(stop_event: threading.Event, stop: asyncio.Event) -> None:
    """Bridge a thread's stop request into the event loop."""
    while not stop_event.is_set():
        await asyncio.sleep(0.1)
    stop.set()


def _stats(
    client: AdvancedTradeClient,
    capture: _Capture,
    publisher: TickPublisher,
    archive: ArchiveWriter,
    seconds: float,
) -> CaptureStats:
    c, p = client.stats, publisher.stats
    return CaptureStats(
        run_id=client.run_id,
        seconds=round(seconds, 3),
        messages=c.messages,
        by_channel=dict(c.by_channel),
        tickers=sum(capture.by_product.values()),
        by_product=dict(capture.by_product),
        malformed=capture.malformed,
        connections=c.connections,
        reconnects=c.reconnects,
        idle_timeouts=c.idle_timeouts,
        unconfirmed=c.unconfirmed,
        gaps=c.gaps,
        missing=c.missing,
        reconnect_seconds_max=max(c.reconnect_seconds, default=None),
        published=p.published,
        delivered=p.delivered,
        publish_errors=p.errors,
        retried=p.retried,
        undelivered=publisher.undelivered,
        archive_lines=archive.stats.lines,
        archive_files=len(archive.stats.files),
        broker_restarts=p.broker_restarts,
        resent=p.resent,
        acked_before_restart=p.acked_before_restart,
    )
