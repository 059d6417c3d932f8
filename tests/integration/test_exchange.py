"""The local exchange over real loopback WebSockets: protocol, determinism, drops, sources, CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from tasks.core.timeutil import parse_ts
from tasks.io.broker import free_port, port_open
from tasks.io.recordings import BadLine, read_ticks
from tasks.sim.exchange import ExchangeServer, recording_ticks, simulator_ticks
from tasks.sim.simulator import simulate_envelopes

pytestmark = pytest.mark.integration

PRODUCTS = ["BTC-USD", "ETH-USD"]
START = 1767225600.0
TICKER = json.dumps({"type": "subscribe", "channel": "ticker", "product_ids": PRODUCTS})
HEARTBEATS = json.dumps({"type": "subscribe", "channel": "heartbeats"})


async def _receive(url: str, requests: list[str], *, count: int, timeout: float) -> list[dict]:
    """Send the requests, then collect up to ``count`` messages or until ``timeout``.

    ``max_queue=None``: a client that stops reading would otherwise pause the socket, and the
    server's close reply would wait behind the data until the close timeout.
    """
    messages: list[dict] = []
    async with connect(url, max_queue=None) as ws:
        for request in requests:
            await ws.send(request)
        try:
            async with asyncio.timeout(timeout):
                while len(messages) < count:
                    messages.append(json.loads(await ws.recv()))
        except TimeoutError:
            pass
    return messages


def _updates(messages: list[dict]) -> list[tuple[str, str]]:
    return [
        (m["timestamp"], json.dumps(t))
        for m in messages
        if m.get("channel") == "ticker"
        for e in m["events"]
        if e["type"] == "update"
        for t in e["tickers"]
    ]


def test_subscribe_then_subscriptions_snapshots_updates_and_heartbeats():
    async def scenario() -> list[dict]:
        ticks = simulator_ticks(PRODUCTS, seed=1, start=time.time())
        async with ExchangeServer(ticks, speed=5.0) as server:
            await asyncio.sleep(1.0)  # let the market make a first tick for each product
            return await _receive(server.url, [TICKER, HEARTBEATS], count=10_000, timeout=2.5)

    messages = asyncio.run(scenario())
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))
    first = messages[0]
    assert first["channel"] == "subscriptions"
    assert first["events"] == [{"subscriptions": {"ticker": PRODUCTS}}]
    snapshots = messages[1:3]
    assert [m["events"][0]["type"] for m in snapshots] == ["snapshot", "snapshot"]
    assert sorted(m["events"][0]["tickers"][0]["product_id"] for m in snapshots) == PRODUCTS
    both = {"ticker": PRODUCTS, "heartbeats": ["heartbeats"]}
    assert messages[3]["channel"] == "subscriptions"
    assert messages[3]["events"] == [{"subscriptions": both}]
    beats = [m for m in messages if m["channel"] == "heartbeats"]
    assert [b["events"][0]["heartbeat_counter"] for b in beats] == list(range(1, len(beats) + 1))
    assert len(beats) >= 2
    updates = _updates(messages)
    assert len(updates) > 5
    times = [parse_ts(ts) for ts, _ in updates]
    assert times == sorted(times)
    assert all(m["client_id"] == "" for m in messages)


def test_same_seed_same_data():
    async def first_updates(seed: int) -> list[tuple[str, str]]:
        async with ExchangeServer(simulator_ticks(PRODUCTS, seed, START), speed=None) as server:
            messages = await _receive(server.url, [TICKER], count=300, timeout=10)
        return _updates(messages)

    a, b, c = (asyncio.run(first_updates(seed)) for seed in (3, 3, 4))
    assert len(a) >= 250
    assert a[:250] == b[:250]
    assert a[:250] != c[:250]
    assert parse_ts(a[0][0]) >= START


def test_drops_close_the_connection_without_a_close_frame():
    async def scenario() -> tuple[list[dict], ConnectionClosedError, float]:
        ticks = simulator_ticks(PRODUCTS, seed=2, start=START)
        async with ExchangeServer(ticks, speed=None, drop_every_s=0.5) as server:
            messages: list[dict] = []
            started = time.monotonic()
            async with connect(server.url) as ws:
                await ws.send(TICKER)
                with pytest.raises(ConnectionClosedError) as caught:
                    while True:
                        messages.append(json.loads(await ws.recv()))
            return messages, caught.value, time.monotonic() - started

    messages, closed, seconds = asyncio.run(scenario())
    assert closed.rcvd is None  # no close frame: an abrupt drop
    assert seconds >= 0.5
    assert len(messages) > 50
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))


def test_skipped_sequence_numbers_are_recorded():
    async def scenario() -> tuple[list[dict], ExchangeServer]:
        ticks = simulator_ticks(PRODUCTS, seed=2, start=START)
        async with ExchangeServer(ticks, speed=None, skip_seq_every=5, record=True) as server:
            messages = await _receive(server.url, [TICKER], count=40, timeout=10)
        return messages, server

    messages, server = asyncio.run(scenario())
    seqs = [m["sequence_num"] for m in messages]
    missing = sorted(set(range(seqs[-1])) - set(seqs))
    assert missing == [4, 9, 14, 19, 24, 29, 34, 39, 44, 49][: len(missing)]
    assert len(missing) == 9
    (connection,) = server.sent
    assert server.skipped[connection][: len(missing)] == missing
    assert [m.seq for m in server.sent[connection]][: len(seqs)] == seqs


def test_bad_requests_get_errors_and_the_connection_stays_usable():
    async def scenario() -> list[dict]:
        ticks = simulator_ticks(PRODUCTS, seed=2, start=START)
        async with ExchangeServer(ticks, speed=None) as server:
            bad = [
                "not json",
                json.dumps({"type": "subscribe", "channel": "level2", "product_ids": PRODUCTS}),
                json.dumps({"type": "subscribe", "channel": "ticker"}),
                json.dumps({"type": "hello"}),
            ]
            return await _receive(server.url, [*bad, TICKER], count=8, timeout=10)

    messages = asyncio.run(scenario())
    assert [m.get("type") for m in messages[:4]] == ["error"] * 4
    assert messages[4]["channel"] == "subscriptions"
    assert messages[4]["sequence_num"] == 0  # errors carry no sequence number
    assert _updates(messages)


def test_a_recording_is_served_unchanged_in_order(tmp_path):
    path = tmp_path / "rec.ndjson"
    lines = [json.dumps(e) for e in simulate_envelopes(PRODUCTS, seed=5, minutes=0.5)]
    path.write_text("\n".join(lines) + "\n")
    recorded = [
        (t.timestamp, json.dumps(t.ticker))
        for t in read_ticks([path])
        if not isinstance(t, BadLine)
    ]

    async def scenario() -> tuple[list[dict], bool]:
        async with ExchangeServer(recording_ticks([path]), speed=None) as server:
            messages = await _receive(server.url, [TICKER], count=len(recorded) + 1, timeout=10)
            return messages, server.feed_done.is_set()

    messages, done = asyncio.run(scenario())
    assert done
    assert _updates(messages) == recorded


def test_exchange_command_serves_until_interrupted():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", "exchange", "--port", str(port), "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        messages = asyncio.run(_receive(f"ws://127.0.0.1:{port}", [TICKER], count=3, timeout=10))
        assert messages[0]["channel"] == "subscriptions"
        assert any(m["channel"] == "ticker" for m in messages[1:])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
