"""A local exchange that speaks the Advanced Trade WebSocket protocol, fed by the simulator or a
recording, for development, tests and demos without the real exchange.

Protocol, as the real one: the client sends one ``subscribe`` (or ``unsubscribe``) per channel
(``ticker`` with ``product_ids``, ``heartbeats``); the server answers with a ``subscriptions``
envelope listing what is active, then a ``ticker`` envelope of type ``snapshot`` per newly
subscribed product (its latest ticker), then ``update`` envelopes as the market moves, and a
``heartbeats`` envelope every second. ``sequence_num`` starts at 0 on every connection and counts
every envelope sent on it. Envelope timestamps are event times (the simulator's or the
recording's).

One market feeds every connection: ticks are paced by their event times (times ``speed``), or, at
``speed=None`` ("max"), sent as fast as the slowest subscribed client reads.

For tests it can drop every connection after ``drop_every_s`` (the TCP connection is aborted
without a WebSocket close, at a message boundary, once what was sent has left the process), skip
sequence numbers (``skip_seq_every``), and record what each connection was sent
(``record=True``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tasks.core.messages import HEARTBEATS_CHANNEL, SUBSCRIPTIONS_CHANNEL, TICKER_CHANNEL
from tasks.core.timeutil import TimestampError, format_ts, parse_ts
from tasks.io.recordings import BadLine, read_ticks

log = logging.getLogger(__name__)

Ticks = Iterable[tuple[float, dict]]

SLOW_CLIENT_LIMIT = 100_000  # queued messages before a paced server drops a client
MAX_SPEED_QUEUE = 1_000  # queued messages per client before a max-speed market waits


def simulator_ticks(
    products: Sequence[str], seed: int, start: float
) -> Iterator[tuple[float, dict]]:
    """The market simulator's endless ticks; the same seed and start give the same ticks."""
    from tasks.sim.simulator import MarketSimulator

    return MarketSimulator(products, seed=seed, start=start).ticks()


def recording_ticks(paths: Sequence[Path], *, loop: bool = False) -> Iterator[tuple[float, dict]]:
    """The tickers of recordings, in file order, at their recorded times.

    With ``loop``, the recordings start again, shifted in time so event time keeps increasing.
    """
    offset = 0.0
    while True:
        first = last = None
        for item in read_ticks(paths):
            if isinstance(item, BadLine):
                log.warning("skipping bad line %s", item.describe())
                continue
            try:
                ts = parse_ts(item.timestamp)
            except TimestampError as exc:
                log.warning("skipping a ticker with a bad timestamp: %s", exc)
                continue
            first = ts if first is None else first
            last = ts
            yield ts + offset, item.ticker
        if not loop or first is None:
            return
        offset += last - first + 1.0


@dataclass(frozen=True, slots=True)
class SentMessage:
    seq: int
    channel: str
    products: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Item:
    """A message waiting in a connection's queue; its sequence number is given when sent."""

    channel: str  # ticker, subscriptions, heartbeats, or "error" (which carries no sequence)
    timestamp: str
    events: list[dict[str, Any]]
    products: tuple[str, ...] = ()


@dataclass(eq=False)
class _Connection:
    id: str
    ws: ServerConnection
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    products: set[str] = field(default_factory=set)
    heartbeats: bool = False
    next_seq: int = 0


def _render(item: _Item, seq: int) -> str:
    if item.channel == "error":
        return json.dumps({"type": "error", "message": item.events[0]["message"]})
    return json.dumps(
        {
            "channel": item.channel,
            "client_id": "",
            "timestamp": item.timestamp,
            "sequence_num": seq,
            "events": item.events,
        },
        separators=(",", ":"),
    )


class ExchangeServer:
    """The local exchange; ``async with ExchangeServer(...) as server`` or ``start``/``stop``."""

    def __init__(
        self,
        ticks: Ticks,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float | None = 1.0,
        drop_every_s: float | None = None,
        skip_seq_every: int | None = None,
        heartbeat_interval_s: float = 1.0,
        record: bool = False,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        if skip_seq_every is not None and skip_seq_every < 2:
            raise ValueError("skip_seq_every must be at least 2")
        self.ticks = ticks
        self.host = host
        self.port = port
        self.speed = speed
        self.drop_every_s = drop_every_s
        self.skip_seq_every = skip_seq_every
        self.heartbeat_interval_s = heartbeat_interval_s
        self.record = record
        self.sent: dict[str, list[SentMessage]] = {}
        self.skipped: dict[str, list[int]] = {}
        self.ticks_generated = 0
        self.drops = 0
        self.feed_done = asyncio.Event()
        self._ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._subscribed = asyncio.Event()
        self._latest: dict[str, dict] = {}
        self._anchor: tuple[float, float] | None = None  # (event time, loop time)
        self._last_event_time: float | None = None
        self._server: Server | None = None
        self._market: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.host, self.port, max_size=2**20, close_timeout=2
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._market = asyncio.create_task(self._run_market())
        log.info("exchange listening on %s", self.url)

    async def stop(self) -> None:
        if self._market is not None:
            self._market.cancel()
            await asyncio.gather(self._market, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> ExchangeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # The market -------------------------------------------------------------------------------

    def event_now(self) -> float:
        """The market's current event time."""
        if self.speed is not None and self._anchor is not None:
            event0, wall0 = self._anchor
            return event0 + (asyncio.get_running_loop().time() - wall0) * self.speed
        if self._last_event_time is not None:
            return self._last_event_time
        return time.time()

    async def _run_market(self) -> None:
        loop = asyncio.get_running_loop()
        unpaced = 0
        for event_time, ticker in self.ticks:
            if self.speed is None:
                await self._wait_for_readers()
            else:
                behind = self._last_event_time is not None and event_time < self._last_event_time
                if self._anchor is None or behind:  # the first tick, or time went backwards
                    self._anchor = (event_time, loop.time())
                event0, wall0 = self._anchor
                delay = wall0 + (event_time - event0) / self.speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    unpaced = 0
            self._last_event_time = event_time
            self._publish(event_time, ticker)
            unpaced += 1
            if unpaced >= 100:  # let connections run when ticks come faster than real time
                await asyncio.sleep(0)
                unpaced = 0
        self.feed_done.set()
        log.info("the market feed has ended after %d ticks", self.ticks_generated)

    def _publish(self, event_time: float, ticker: dict) -> None:
        product = ticker.get("product_id")
        if not isinstance(product, str):
            return
        self.ticks_generated += 1
        self._latest[product] = ticker
        item = _Item(
            TICKER_CHANNEL,
            format_ts(event_time),
            [{"type": "update", "tickers": [ticker]}],
            (product,),
        )
        for conn in list(self._connections):
            if product in conn.products:
                conn.queue.put_nowait(item)
                if self.speed is not None and conn.queue.qsize() > SLOW_CLIENT_LIMIT:
                    log.warning("connection %s reads too slowly; dropping it", conn.id)
                    conn.ws.transport.abort()

    async def _wait_for_readers(self) -> None:
        """At max speed: wait for a subscriber, and for every subscriber to catch up."""
        while True:
            await self._subscribed.wait()
            readers = [c for c in self._connections if c.products]
            if not readers:
                self._subscribed.clear()
                continue
            if all(c.queue.qsize() < MAX_SPEED_QUEUE for c in readers):
                return
            await asyncio.sleep(0.001)

    # Connections -------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = _Connection(str(next(self._ids)), ws)
        self._connections.add(conn)
        if self.record:
            self.sent[conn.id] = []
            self.skipped[conn.id] = []
        log.info("connection %s from %s", conn.id, ws.remote_address)
        tasks = [
            asyncio.create_task(self._read(conn)),
            asyncio.create_task(self._write(conn)),
            asyncio.create_task(self._beat(conn)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, ConnectionClosed):
                    log.error("connection %s failed: %r", conn.id, exc)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._connections.discard(conn)
            log.info("connection %s ended after %d messages", conn.id, conn.next_seq)

    async def _read(self, conn: _Connection) -> None:
        try:
            async for raw in conn.ws:
                try:
                    request = json.loads(raw)
                    if not isinstance(request, dict):
                        raise ValueError("not an object")
                except ValueError:
                    self._error(conn, "malformed request")
                    continue
                self._on_request(conn, request)
        except ConnectionClosed:
            return

    def _error(self, conn: _Connection, message: str) -> None:
        conn.queue.put_nowait(_Item("error", "", [{"message": message}]))

    def _on_request(self, conn: _Connection, request: dict[str, Any]) -> None:
        """Apply a (un)subscribe; queue the reply and snapshots in the same step, so no update
        for a new product can be queued before its snapshot."""
        kind, channel = request.get("type"), request.get("channel")
        if kind not in ("subscribe", "unsubscribe"):
            self._error(conn, f"unsupported request type {kind!r}")
            return
        subscribe = kind == "subscribe"
        new: list[str] = []
        if channel == TICKER_CHANNEL:
            products = request.get("product_ids")
            if (
                not isinstance(products, list)
                or not products
                or not all(isinstance(p, str) and p for p in products)
            ):
                self._error(conn, "ticker needs a non-empty product_ids list")
                return
            if subscribe:
                new = [p for p in dict.fromkeys(products) if p not in conn.products]
                conn.products.update(products)
            else:
                conn.products.difference_update(products)
        elif channel == HEARTBEATS_CHANNEL:
            conn.heartbeats = subscribe
        else:
            self._error(conn, f"unsupported channel {channel!r}")
            return
        stamp = format_ts(self.event_now())
        active: dict[str, list[str]] = {}
        if conn.products:
            active[TICKER_CHANNEL] = sorted(conn.products)
        if conn.heartbeats:
            active[HEARTBEATS_CHANNEL] = [HEARTBEATS_CHANNEL]
        conn.queue.put_nowait(_Item(SUBSCRIPTIONS_CHANNEL, stamp, [{"subscriptions": active}]))
        for product in new:
            if product in self._latest:
                events = [{"type": "snapshot", "tickers": [self._latest[product]]}]
                conn.queue.put_nowait(_Item(TICKER_CHANNEL, stamp, events, (product,)))
        if conn.products:
            self._subscribed.set()

    async def _write(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        drop_at = loop.time() + self.drop_every_s if self.drop_every_s else None
        while True:
            if drop_at is not None and loop.time() >= drop_at:
                await self._drop(conn)
                return
            try:
                async with asyncio.timeout_at(drop_at):
                    item = await conn.queue.get()
            except TimeoutError:
                continue
            seq = -1
            if item.channel != "error":
                seq = conn.next_seq
                if self.skip_seq_every and (seq + 1) % self.skip_seq_every == 0:
                    if self.record:
                        self.skipped[conn.id].append(seq)
                    seq += 1
                conn.next_seq = seq + 1
            await conn.ws.send(_render(item, seq))
            if self.record:
                self.sent[conn.id].append(SentMessage(seq, item.channel, item.products))

    async def _drop(self, conn: _Connection) -> None:
        transport = conn.ws.transport
        while transport.get_write_buffer_size() and not transport.is_closing():
            await asyncio.sleep(0.002)
        transport.abort()
        self.drops += 1
        log.info("dropped connection %s after %d messages", conn.id, conn.next_seq)

    async def _beat(self, conn: _Connection) -> None:
        start = time.monotonic()
        for counter in itertools.count(1):
            await asyncio.sleep(self.heartbeat_interval_s)
            if not conn.heartbeats:
                continue
            stamp = format_ts(self.event_now())
            current = f"{stamp[:10]} {stamp[11:26]}000 +0000 UTC m=+{time.monotonic() - start:.9f}"
            events = [{"current_time": current, "heartbeat_counter": counter}]
            conn.queue.put_nowait(_Item(HEARTBEATS_CHANNEL, stamp, events))


class ExchangeThread:
    """Runs an :class:`ExchangeServer` on its own event loop in a background thread.

    For synchronous callers (tests, the quickstart): ``with ExchangeThread(server) as ex: ex.url``.
    """

    def __init__(self, server: ExchangeServer) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, timeout: float = 10.0) -> ExchangeThread:
        self._thread = threading.Thread(target=self._run, name="exchange-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the exchange server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.server:
            self._ready.set()
            await self._stop.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ExchangeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
