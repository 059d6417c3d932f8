"""The exchange client against servers that misbehave: silence, no confirmation, odd sequences,
nobody listening yet."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tasks.io.broker import free_port
from tasks.io.exchange_client import AdvancedTradeClient, Gap, Received
from tasks.sim.exchange import ExchangeServer, simulator_ticks

pytestmark = pytest.mark.integration

PRODUCTS = ["BTC-USD", "ETH-USD"]


def _envelope(channel: str, seq: int, events: list | None = None) -> str:
    return json.dumps(
        {
            "channel": channel,
            "client_id": "",
            "timestamp": "2026-01-01T00:00:00.000000Z",
            "sequence_num": seq,
            "events": events or [],
        }
    )


async def _run(client: AdvancedTradeClient, seconds: float) -> list[Received]:
    received: list[Received] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await client.run(received.append, stop)
    return received


def test_an_unconfirmed_subscription_is_reported():
    async def heartbeats_only(ws: ServerConnection) -> None:
        for seq in range(100):
            await ws.send(_envelope("heartbeats", seq))
            await asyncio.sleep(0.05)

    async def scenario() -> AdvancedTradeClient:
        async with serve(heartbeats_only, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = AdvancedTradeClient(f"ws://127.0.0.1:{port}", PRODUCTS, confirm_timeout_s=0.4)
            await _run(client, 1.2)
            return client

    client = asyncio.run(scenario())
    assert client.stats.connections == 1
    assert client.stats.unconfirmed == 1
    assert client.stats.by_channel["heartbeats"] > 10


def test_silence_makes_the_client_reconnect_and_resubscribe():
    requests: list[list[dict]] = []

    async def silent(ws: ServerConnection) -> None:
        seen: list[dict] = []
        requests.append(seen)
        async for raw in ws:
            seen.append(json.loads(raw))

    async def scenario() -> AdvancedTradeClient:
        async with serve(silent, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = AdvancedTradeClient(f"ws://127.0.0.1:{port}", PRODUCTS, idle_timeout_s=0.4)
            await _run(client, 2.0)
            return client

    client = asyncio.run(scenario())
    assert client.stats.idle_timeouts >= 2
    assert client.stats.connections >= 2 and client.stats.reconnects >= 2
    expected = [
        {"type": "subscribe", "channel": "ticker", "product_ids": PRODUCTS},
        {"type": "subscribe", "channel": "heartbeats"},
    ]
    assert len(requests) >= 2
    assert all(seen == expected for seen in requests)  # every connection subscribes again


def test_sequence_gaps_and_repeats_are_counted_per_connection():
    async def odd_sequence(ws: ServerConnection) -> None:
        confirm = [{"subscriptions": {"ticker": PRODUCTS}}]
        for seq in (0, 1, 4, 3, 5, 9):
            events = confirm if seq == 0 else []
            await ws.send(_envelope("subscriptions" if seq == 0 else "heartbeats", seq, events))
        await ws.wait_closed()

    async def scenario() -> tuple[AdvancedTradeClient, list[Received]]:
        async with serve(odd_sequence, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = AdvancedTradeClient(f"ws://127.0.0.1:{port}", PRODUCTS, run_id="t")
            received = await _run(client, 0.5)
            return client, received

    client, received = asyncio.run(scenario())
    assert len(received) == 6 and {r.connection for r in received} == {"t-1"}
    assert list(client.stats.gap_log) == [Gap("t-1", 2, 4), Gap("t-1", 6, 9)]
    assert client.stats.gaps == 2 and client.stats.missing == 5
    assert client.stats.out_of_order == 1
    assert client.stats.unconfirmed == 0


def test_the_client_waits_for_an_exchange_that_is_not_up_yet():
    port = free_port()

    async def scenario() -> AdvancedTradeClient:
        client = AdvancedTradeClient(
            f"ws://127.0.0.1:{port}", PRODUCTS, reconnect_initial_s=0.05, reconnect_max_s=0.2
        )
        ticks = simulator_ticks(PRODUCTS, seed=1, start=1767225600.0)

        async def exchange_comes_up() -> None:
            await asyncio.sleep(1.0)
            async with ExchangeServer(ticks, port=port, speed=None):
                await asyncio.sleep(1.0)

        server = asyncio.create_task(exchange_comes_up())
        await _run(client, 1.8)
        await server
        return client

    client = asyncio.run(scenario())
    assert client.stats.failed_connects >= 3  # retried while nobody listened, capped backoff
    assert client.stats.connections == 1
    assert client.stats.by_channel["ticker"] > 10
    assert len(client.stats.reconnect_seconds) == 1
