"""Prefect flow ``capture``: a bounded live capture into ``ticks.raw`` and the raw archive."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from tasks.io.kafka import ensure_topics
from tasks.services.capture import run_capture
from tasks.settings import get_settings


@task(name="ensure-topics", retries=2, retry_delay_seconds=5)
def ensure_topics_task() -> list[str]:
    return ensure_topics(get_settings())


@task(name="capture-ticks")
def capture_task(minutes: float, products: list[str] | None, url: str | None) -> dict:
    stats = run_capture(get_settings(), url=url, products=products, minutes=minutes, metrics_port=0)
    return stats.summary()


@flow(name="capture")
def capture(minutes: float = 59, products: list[str] | None = None, url: str | None = None) -> dict:
    """Capture ``minutes`` of the ticker feed (default: the settings' products and URL)."""
    ensure_topics_task()
    summary = capture_task(minutes, products, url)
    get_run_logger().info("capture summary: %s", summary)
    if summary["error"]:
        raise RuntimeError(summary["error"])
    if summary["undelivered"]:
        raise RuntimeError(f"{summary['undelivered']} tickers were not delivered to Kafka")
    return summary
