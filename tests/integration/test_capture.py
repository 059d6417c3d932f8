"""Capture from the local exchange into a real broker and the raw archive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from topic_reader import read_raw_ticks

from tasks.io.broker import free_port
from tasks.io.exchange_client import AdvancedTradeClient
from tasks.io.recordings import RecordedEnvelope, expand_inputs, read_envelopes
from tasks.services.capture import CaptureStats, run_capture
from tasks.services.replay import run_replay
from tasks.sim.exchange import ExchangeServer, ExchangeThread, simulator_ticks

pytestmark = pytest.mark.integration

PRODUCTS = ("BTC-USD", "ETH-USD")


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _capture_from(server: ExchangeServer, settings, seconds: float, metrics_port: int = 0):
    """Run capture against the server for ``seconds``, then stop the server, let the client take
    in everything that was sent, and stop capture. Returns (stats, client, scraped metrics)."""
    with ExchangeThread(server) as exchange:
        client = AdvancedTradeClient(exchange.url, PRODUCTS, idle_timeout_s=5.0)
        stop = threading.Event()
        result: dict[str, CaptureStats] = {}

        def capture() -> None:
            result["stats"] = run_capture(
                settings, stop_event=stop, metrics_port=metrics_port, client=client
            )

        thread = threading.Thread(target=capture)
        thread.start()
        time.sleep(seconds)
        metrics = ""
        if metrics_port:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            metrics = urllib.request.urlopen(url, timeout=5).read().decode()
    sent = sum(len(messages) for messages in server.sent.values())
    assert _wait_for(lambda: client.stats.messages >= sent, 10), (client.stats.messages, sent)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    return result["stats"], client, metrics


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_capture_through_drops_keeps_every_sequence_number_or_reports_a_gap(kafka_settings):
    server = ExchangeServer(
        simulator_ticks(PRODUCTS, seed=11, start=time.time()),
        speed=10.0,
        drop_every_s=2.0,
        skip_seq_every=9,
        record=True,
    )
    port = free_port()
    stats, client, metrics = _capture_from(server, kafka_settings, 10.0, metrics_port=port)

    assert server.drops >= 3
    assert stats.connections == len(server.sent) >= 4
    assert stats.undelivered == 0 and stats.publish_errors == 0
    # Server connection n is the client's n-th connection (one client, loopback).
    source = {cid: f"{client.run_id}-{cid}" for cid in server.sent}

    sent_tickers = Counter(
        (source[cid], m.seq, product)
        for cid, messages in server.sent.items()
        for m in messages
        if m.channel == "ticker"
        for product in m.products
    )
    records = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=len(sent_tickers))
    on_topic = Counter((r.source, r.sequence_num, r.product_id) for _, r in records)
    assert len(sent_tickers) > 200
    assert on_topic == sent_tickers  # every ticker sent, exactly once, nothing else
    assert all(key.decode() == r.product_id for key, r in records)
    assert stats.tickers == len(records)

    # A skipped sequence number is visible once a later message arrives: all of those are gaps.
    expected_gaps = {
        (source[cid], seq)
        for cid, skipped in server.skipped.items()
        for seq in skipped
        if any(m.seq > seq for m in server.sent[cid])
    }
    reported = {(g.connection, s) for g in client.stats.gap_log for s in range(g.expected, g.got)}
    assert expected_gaps and reported == expected_gaps
    assert stats.gaps == len(expected_gaps)

    # Every message sent (all channels) is in the archive, once, in its connection's files.
    archived = Counter()
    for item in read_envelopes(expand_inputs([kafka_settings.archive_dir])):
        assert isinstance(item, RecordedEnvelope), item
        connection = Path(item.path).name.removesuffix(".ndjson.gz").rsplit("_", 1)[1]
        archived[(connection, item.envelope.sequence_num)] += 1
    sent_all = Counter((source[cid], m.seq) for cid, ms in server.sent.items() for m in ms)
    assert archived == sent_all

    # Reconnects (disconnect to the next confirmed subscription) are fast.
    assert len(client.stats.reconnect_seconds) >= 3
    assert max(client.stats.reconnect_seconds) < 2.0

    # The metrics endpoint showed the run while it was going.
    assert _metric(metrics, "cryptovol_capture_reconnects_total") >= 1
    assert _metric(metrics, "cryptovol_capture_sequence_gaps_total") >= 1
    assert _metric(metrics, "cryptovol_capture_publish_errors_total") == 0
    assert _metric(metrics, "cryptovol_capture_seconds_since_last_message") < 5
    assert 'cryptovol_capture_tickers_total{product="BTC-USD"}' in metrics


def test_capture_archive_replay_round_trip_gives_identical_tickers(kafka_settings):
    server = ExchangeServer(
        simulator_ticks(PRODUCTS, seed=5, start=time.time()),
        speed=10.0,
        drop_every_s=2.5,
        record=True,
    )
    stats, _, _ = _capture_from(server, kafka_settings, 6.0)
    assert stats.undelivered == 0 and stats.connections >= 2
    captured = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=stats.tickers)

    replayed_settings = kafka_settings.model_copy(
        update={"raw_topic": kafka_settings.raw_topic + ".replayed"}
    )
    replay = run_replay(replayed_settings, [kafka_settings.archive_dir], speed=None)
    assert replay.malformed == 0 and replay.undelivered == 0
    assert replay.tickers == stats.tickers
    replayed = read_raw_ticks(
        replayed_settings, replayed_settings.raw_topic, expected=replay.tickers
    )

    def payloads(records):
        return Counter(
            (r.product_id, r.timestamp, r.sequence_num, r.event_type, r.index, json.dumps(r.ticker))
            for _, r in records
        )

    assert len(captured) == stats.tickers > 100
    assert payloads(replayed) == payloads(captured)
    # Same sequence spaces: one archive file per connection (and hour), never two connections.
    by_capture = {r.source for _, r in captured}
    by_replay = {r.source for _, r in replayed}
    assert len(by_replay) == len(by_capture) * len(PRODUCTS)


@pytest.mark.parametrize("command", ["capture", "replay"])
def test_commands_fail_fast_with_a_hint_when_no_broker_answers(command, tmp_path):
    recording = tmp_path / "one.ndjson"
    recording.write_text('{"channel":"heartbeats","timestamp":"2026-01-01T00:00:00Z"}\n')
    args = ["--minutes", "0.1", "--metrics-port", "0"] if command == "capture" else [str(recording)]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "CRYPTOVOL_KAFKA_CONNECT_TIMEOUT_S": "2",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.cli", command, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "cryptovol broker" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30


def test_capture_command_runs_for_the_minutes_given(kafka_settings, tmp_path):
    server = ExchangeServer(simulator_ticks(PRODUCTS, seed=2, start=time.time()), speed=10.0)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "CRYPTOVOL_RAW_TOPIC": kafka_settings.raw_topic,
    }
    with ExchangeThread(server) as exchange:
        args = ["--url", exchange.url, "--products", "BTC-USD,ETH-USD", "--minutes", "0.05"]
        args += ["--metrics-port", "0", "--data-dir", str(tmp_path)]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "tasks.cli", "capture", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 30
    summary = json.loads(proc.stdout)
    assert summary["connections"] == 1 and summary["undelivered"] == 0
    assert summary["tickers"] > 10 and set(summary["by_product"]) == set(PRODUCTS)
    assert 2.5 < summary["seconds"] < 10
    files = expand_inputs([tmp_path / "archive"])
    assert {p.parent.name for p in files} == {*PRODUCTS, "_control"}
    records = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=summary["tickers"])
    assert len(records) == summary["tickers"]


def test_capture_that_never_connects_fails_saying_so(kafka_settings, tmp_path):
    """Before, ``capture --url`` pointing at nothing exited 0 after zero connections."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "CRYPTOVOL_RAW_TOPIC": kafka_settings.raw_topic,
    }
    url = f"ws://127.0.0.1:{free_port()}"
    args = ["--url", url, "--minutes", "0.05", "--metrics-port", "0", "--data-dir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "capture", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"never connected to {url}" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["connections"] == 0 and summary["error"].startswith("never connected")


def _poison_exchange(messages: list[str | bytes], ready: threading.Event, port: list[int]):
    """A WebSocket server that answers every subscription with ``messages``, then stays open."""
    import asyncio

    from websockets.asyncio.server import serve

    async def handler(ws) -> None:
        await ws.recv()  # the ticker subscription
        await ws.recv()  # the heartbeats one
        for message in messages:
            await ws.send(message)
        await asyncio.sleep(30)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.sleep(60)

    asyncio.run(main())


def test_poison_messages_from_the_exchange_are_counted_and_capture_goes_on(kafka_settings):
    """Before, a deeply nested message raised a RecursionError out of the capture loop."""
    stamp = "2026-01-01T00:00:00.000000Z"
    subscribed = {
        "channel": "subscriptions",
        "timestamp": stamp,
        "sequence_num": 0,
        "events": [{"subscriptions": {"ticker": list(PRODUCTS), "heartbeats": ["heartbeats"]}}],
    }
    good_ticker = {"product_id": "ETH-USD", "price": "3000", "best_bid": "2999", "best_ask": "3001"}
    messages = [
        json.dumps(subscribed),
        "[" * 100_000 + "]" * 100_000,  # deeper than the parser recurses
        '{"channel":"ticker","timestamp":"' + stamp + '","sequence_num":2,"events":'
        '[{"tickers":[{"product_id":["BTC-USD"]}]}, 7]}',  # malformed tickers: counted
        b"\xff\xfe binary, not UTF-8",
        '{"channel":["not","a","string"],"timestamp":"' + stamp + '"}',
        json.dumps(
            {
                "channel": "ticker",
                "timestamp": stamp,
                "sequence_num": 5,
                "events": [{"type": "update", "tickers": [good_ticker]}],
            }
        ),
    ]
    ready, port = threading.Event(), []
    threading.Thread(target=_poison_exchange, args=(messages, ready, port), daemon=True).start()
    assert ready.wait(10)
    client = AdvancedTradeClient(f"ws://127.0.0.1:{port[0]}", PRODUCTS, idle_timeout_s=30)
    stop = threading.Event()
    threading.Timer(4.0, stop.set).start()
    stats = run_capture(kafka_settings, stop_event=stop, metrics_port=0, client=client)
    assert stats.error is None and stats.connections == 1
    assert stats.messages == len(messages)
    assert stats.by_channel["_invalid"] == 3  # too deep, not UTF-8 JSON, channel not a string
    assert stats.malformed == 2  # the ticker without a product id, the event that is a number
    assert stats.tickers == 1 and stats.by_product == {"ETH-USD": 1}
    assert stats.archive_lines == len(messages)  # every message kept as received
    records = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=stats.tickers)
    assert len(records) == stats.tickers
