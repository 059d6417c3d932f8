"""The ``capture`` Prefect flow on the session's Prefect server: a bounded capture from the local
exchange into a real broker and the raw archive."""

from __future__ import annotations

import pytest
from session_services import prefect_api
from topic_reader import read_raw_ticks

from tasks.io.recordings import expand_inputs, read_ticks
from tasks.settings import get_settings
from tasks.sim.exchange import ExchangeServer, ExchangeThread, simulator_ticks

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_capture_flow_fills_the_topic_and_the_archive(kafka_settings, prefect_server, monkeypatch):

    from flows.capture import capture

    s = kafka_settings
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "CRYPTOVOL_RAW_TOPIC": s.raw_topic,
        "CRYPTOVOL_FEATURES_TOPIC": s.features_topic,
        "CRYPTOVOL_PREDICTIONS_TOPIC": s.predictions_topic,
        "CRYPTOVOL_DLQ_TOPIC": s.dlq_topic,
        "CRYPTOVOL_DATA_DIR": str(s.data_dir),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    server = ExchangeServer(simulator_ticks(["BTC-USD", "ETH-USD"], seed=5, start=1767225600.0))
    try:
        on_server = prefect_api(prefect_server)
        with ExchangeThread(server) as exchange, on_server:
            summary = capture(minutes=0.15, products=["BTC-USD", "ETH-USD"], url=exchange.url)
    finally:
        get_settings.cache_clear()

    assert summary["tickers"] > 5 and summary["undelivered"] == 0 and summary["gaps"] == 0
    on_topic = read_raw_ticks(s, s.raw_topic, expected=summary["tickers"])
    assert len(on_topic) == summary["tickers"]
    archived = [t for t in read_ticks(expand_inputs([s.archive_dir])) if hasattr(t, "ticker")]
    assert sorted(t.ticker["price"] for t in archived) == sorted(
        r.ticker["price"] for _, r in on_topic
    )
