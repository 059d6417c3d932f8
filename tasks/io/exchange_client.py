"""A client for the Coinbase Advanced Trade market-data WebSocket (or anything speaking it).

It keeps one connection alive and hands every message, as received, to a callback: it
subscribes on every connect (one subscribe per channel, as Advanced Trade requires), checks that
the exchange confirmed the ticker products, tracks ``sequence_num`` per connection (shared by all
channels of a connection) and records every gap, reconnects when nothing arrives for
``idle_timeout_s``, and retries with jittered exponential backoff whose first wait is about
``reconnect_initial_s``. It knows nothing of Kafka or files: the capture loop does.

Each connection gets an id, ``<run id>-<n>``: the ``source`` of the raw ticks it carries, since
sequence numbers restart on every connection. Each message also gets the connection's clock
offset, the median over its last :data:`OFFSET_WINDOW` sampled messages (the first ones, then one
per :data:`OFFSET_SAMPLE_S` of receive time) of envelope timestamp minus local receive time, so
that a tick's event time can be held against its receive time on the exchange's clock
(:func:`tasks.core.messages.check_event_time`) whatever the local clock says. Whatever goes
wrong with one message is that message's problem: it is handed over without an envelope and
counted as invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tasks.core.messages import (
    SUBSCRIPTIONS_CHANNEL,
    TICKER_CHANNEL,
    Envelope,
    parse_envelope,
)
from tasks.core.timeutil import TimestampError, parse_ts

log = logging.getLogger(__name__)

INVALID_CHANNEL = "_invalid"  # messages that are not channel envelopes (errors, garbage)
OFFSET_WINDOW = 9  # sampled messages whose median clock offset is the connection's
OFFSET_SAMPLE_S = 0.05  # once the window is full, a message is sampled at most this often


@dataclass(frozen=True, slots=True)
class Received:
    """One message as it came off the wire."""

    text: str
    received_at: float  # epoch seconds
    connection: str
    envelope: Envelope | None  # None when the message is not a channel envelope
    clock_offset_s: float = 0.0  # the exchange's clock minus ours on this connection (median)


@dataclass(frozen=True, slots=True)
class Gap:
    connection: str
    expected: int
    got: int

    @property
    def missing(self) -> int:
        return self.got - self.expected


@dataclass
class ClientStats:
    connections: int = 0  # connections opened
    reconnects: int = 0  # attempts made after a lost connection or a failed attempt
    failed_connects: int = 0
    last_connect_error: str | None = None
    idle_timeouts: int = 0
    unconfirmed: int = 0  # connections whose ticker subscription was not confirmed in time
    messages: int = 0
    by_channel: Counter = field(default_factory=Counter)
    gaps: int = 0
    missing: int = 0  # sequence numbers never received, summed over gaps
    out_of_order: int = 0  # sequence numbers at or below one already seen
    last_message_at: float | None = None  # time.monotonic() of the last message
    gap_log: deque = field(default_factory=lambda: deque(maxlen=10_000))
    reconnect_seconds: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def seconds_since_last_message(self) -> float:
        if self.last_message_at is None:
            return float("nan")
        return time.monotonic() - self.last_message_at


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Wait before retry number ``attempt`` (1, 2, ...): doubling, capped, jittered to 50-100 %."""
    base = min(maximum, initial * 2 ** (attempt - 1))
    return base * rng.uniform(0.5, 1.0)


def subscribe_messages(products: Sequence[str], channels: Sequence[str]) -> list[str]:
    """One subscribe request per channel; only the ticker channel takes product ids."""
    requests = []
    for channel in channels:
        request: dict[str, object] = {"type": "subscribe", "channel": channel}
        if channel == TICKER_CHANNEL:
            request["product_ids"] = list(products)
        requests.append(json.dumps(request))
    return requests


def confirmed_products(envelope: Envelope) -> set[str]:
    """The ticker products a ``subscriptions`` envelope lists as active."""
    products: set[str] = set()
    for event in envelope.events:
        subscriptions = event.get("subscriptions") if isinstance(event, dict) else None
        if isinstance(subscriptions, dict) and isinstance(subscriptions.get(TICKER_CHANNEL), list):
            products.update(p for p in subscriptions[TICKER_CHANNEL] if isinstance(p, str))
    return products


class _Session:
    """What the client tracks on one connection."""

    def __init__(self, connection_id: str, opened_at: float) -> None:
        self.id = connection_id
        self.opened_at = opened_at
        self.expected_seq = 0
        self.confirmed = False
        self.confirm_reported = False
        self.offsets: deque[float] = deque(maxlen=OFFSET_WINDOW)
        self.offset = 0.0
        self.sampled_at = -math.inf

    def clock_offset(self, envelope: Envelope, received_at: float) -> float:
        """The connection's clock offset: the median of the sampled offsets, this message's
        counted in when it is sampled (each of the first ones, then one per ``OFFSET_SAMPLE_S``)."""
        offsets = self.offsets
        if len(offsets) < OFFSET_WINDOW or received_at - self.sampled_at >= OFFSET_SAMPLE_S:
            with contextlib.suppress(TimestampError):  # an unparseable one tells nothing
                offsets.append(parse_ts(envelope.timestamp) - received_at)
                self.sampled_at = received_at
                self.offset = sorted(offsets)[(len(offsets) - 1) // 2]
        return self.offset


class AdvancedTradeClient:
    def __init__(
        self,
        url: str,
        products: Sequence[str],
        *,
        channels: Sequence[str] = ("ticker", "heartbeats"),
        idle_timeout_s: float = 10.0,
        reconnect_initial_s: float = 0.1,
        reconnect_max_s: float = 10.0,
        confirm_timeout_s: float = 5.0,
        open_timeout_s: float = 10.0,
        run_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not products:
            raise ValueError("at least one product")
        self.url = url
        self.products = tuple(products)
        self.channels = tuple(channels)
        self.idle_timeout_s = idle_timeout_s
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.confirm_timeout_s = confirm_timeout_s
        self.open_timeout_s = open_timeout_s
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.rng = rng or random.Random()
        self.stats = ClientStats()
        self._disconnected_at: float | None = None  # monotonic, while a reconnect is under way

    async def run(self, on_message: Callable[[Received], None], stop: asyncio.Event) -> None:
        """Receive until ``stop`` is set, reconnecting as needed; ``on_message`` gets each one."""
        stopper = asyncio.create_task(stop.wait())
        worker = asyncio.create_task(self._connect_forever(on_message))
        try:
            await asyncio.wait({stopper, worker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopper, worker):
                task.cancel()
            await asyncio.gather(stopper, worker, return_exceptions=True)
        if worker.done() and not worker.cancelled() and worker.exception() is not None:
            raise worker.exception()

    async def _connect_forever(self, on_message: Callable[[Received], None]) -> None:
        attempt = 0  # consecutive failures; 0 right after a healthy connection
        while True:
            if self._disconnected_at is not None:
                self.stats.reconnects += 1
                attempt += 1
                delay = backoff_delay(
                    attempt, self.reconnect_initial_s, self.reconnect_max_s, self.rng
                )
                log.info("reconnecting in %.2f s (attempt %d)", delay, attempt)
                await asyncio.sleep(delay)
            try:
                async with connect(
                    self.url,
                    open_timeout=self.open_timeout_s,
                    max_size=None,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=0.5,  # leaving (stop, idle): don't wait long on the peer
                ) as ws:
                    self.stats.connections += 1
                    session = _Session(f"{self.run_id}-{self.stats.connections}", time.monotonic())
                    log.info("connected to %s as %s", self.url, session.id)
                    for request in subscribe_messages(self.products, self.channels):
                        await ws.send(request)
                    healthy = await self._receive(ws, session, on_message)
                    if healthy:
                        attempt = 0
            except ConnectionClosed as exc:
                log.warning("connection closed while subscribing: %s", exc)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                self.stats.failed_connects += 1
                self.stats.last_connect_error = str(exc) or type(exc).__name__
                log.warning("cannot connect to %s: %s", self.url, exc)
            if self._disconnected_at is None:
                self._disconnected_at = time.monotonic()

    async def _receive(
        self, ws: ClientConnection, session: _Session, on_message: Callable[[Received], None]
    ) -> bool:
        """Read one connection until it ends; True when its subscription had been confirmed."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout_s):
                        data = await ws.recv()  # str for text frames, bytes for binary ones
                        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                except TimeoutError:
                    self.stats.idle_timeouts += 1
                    log.warning(
                        "%s: nothing received for %.1f s; reconnecting",
                        session.id,
                        self.idle_timeout_s,
                    )
                    return session.confirmed
                on_message(self._accept(text, session))
        except ConnectionClosed as exc:
            log.warning("%s: connection closed (%s)", session.id, exc)
            return session.confirmed
        finally:
            if self._disconnected_at is None:
                self._disconnected_at = time.monotonic()

    def _accept(self, text: str, session: _Session) -> Received:
        received_at = time.time()
        now = time.monotonic()
        stats = self.stats
        stats.messages += 1
        stats.last_message_at = now
        offset = 0.0
        try:
            envelope: Envelope | None = parse_envelope(text)
            offset = session.clock_offset(envelope, received_at)
            stats.by_channel[envelope.channel] += 1
            self._check_sequence(envelope.sequence_num, session)
            if envelope.channel == SUBSCRIPTIONS_CHANNEL and not session.confirmed:
                self._check_confirmation(envelope, session, now)
        except Exception as exc:  # MessageError, or anything else this message provokes
            envelope = None
            stats.by_channel[INVALID_CHANNEL] += 1
            log.warning("%s: not a channel message: %s", session.id, str(exc)[:300])
        overdue = now - session.opened_at > self.confirm_timeout_s
        if overdue and not session.confirmed and not session.confirm_reported:
            session.confirm_reported = True
            stats.unconfirmed += 1
            log.error(
                "%s: ticker subscription for %s not confirmed within %.1f s",
                session.id,
                ",".join(self.products),
                self.confirm_timeout_s,
            )
        return Received(text, received_at, session.id, envelope, offset)

    def _check_sequence(self, seq: int, session: _Session) -> None:
        if seq < 0:  # the message carries no sequence number
            return
        if seq > session.expected_seq:
            gap = Gap(session.id, session.expected_seq, seq)
            self.stats.gaps += 1
            self.stats.missing += gap.missing
            self.stats.gap_log.append(gap)
            log.warning(
                "%s: sequence gap: expected %d, got %d (%d missing)",
                session.id,
                gap.expected,
                gap.got,
                gap.missing,
            )
        elif seq < session.expected_seq:
            self.stats.out_of_order += 1
            log.warning("%s: sequence %d after %d", session.id, seq, session.expected_seq - 1)
        session.expected_seq = max(session.expected_seq, seq + 1)

    def _check_confirmation(self, envelope: Envelope, session: _Session, now: float) -> None:
        active = confirmed_products(envelope)
        if set(self.products) <= active:
            session.confirmed = True
            if self._disconnected_at is not None:
                self.stats.reconnect_seconds.append(now - self._disconnected_at)
                self._disconnected_at = None
            log.info("%s: subscribed to %s", session.id, ",".join(sorted(active)))
