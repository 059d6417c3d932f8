"""The timeline page, end to end: a recording replayed through the real broker, featurizer and
scorer (the registered champion), the timeline built from the stream as ``cryptovol reports
--timeline --recordings`` builds it, and every page drawn in headless Chromium with every series:
mid price, probability with the threshold and the predicted episodes, forward volatility with tau
and the real episodes, the champion version. Once for a simulated recording (always) and once
for a real one (``../shared/data``; skipped when absent)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from monitoring_support import SPIKY_MARKET
from PIL import Image

from monitoring.timeline import span_of_recordings, write_timelines
from tasks.io.model_source import ModelSource
from tasks.sim.writer import write_recordings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SERIES = {"mid price", "probability", "forward volatility", "model version"}


def _replayed(settings_base, broker_address, recordings: list[str]):
    """Settings on fresh topics with ``recordings`` replayed, featurized and scored on them."""
    from tasks.services.featurizer import run_featurizer
    from tasks.services.replay import run_replay
    from tasks.services.scorer import run_scorer

    suffix = uuid.uuid4().hex[:8]
    settings = settings_base.model_copy(
        update={
            "kafka_bootstrap_servers": broker_address,
            "raw_topic": f"ticks.raw.{suffix}",
            "features_topic": f"ticks.features.{suffix}",
            "predictions_topic": f"ticks.predictions.{suffix}",
            "alerts_topic": f"ticks.alerts.{suffix}",
            "dlq_topic": f"ticks.raw.dlq.{suffix}",
            "features_dlq_topic": f"ticks.features.dlq.{suffix}",
            "pushgateway_url": "",
            "episode_quiet_s": 30.0,
        }
    )
    run_replay(settings, recordings, speed=None)
    run_featurizer(settings, f"f-{suffix}", max_idle_s=4.0, metrics_port=0)
    run_scorer(settings, f"s-{suffix}", max_idle_s=5.0, metrics_port=0)
    return settings


def _timelines(settings, recordings: list[str], reports: Path) -> list[Path]:
    source = ModelSource(settings)
    source.load()
    since, until = span_of_recordings(recordings)
    settings = settings.model_copy(update={"data_dir": reports})
    return write_timelines(settings, source.current.predictor.label, since, until, raw=recordings)


def _draw(pages: list[Path], shots: Path) -> dict[str, dict]:
    """Each product page in Chromium: which series, limits and episode bands it drew."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("chromium not found: run infra/setup.sh (Debian package chromium)")
    drawn, problems = {}, []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(pages[0].as_uri())
            links = page.locator("li a").count()
            listed = {  # "BTC-USD: 720 scored seconds, 3 predicted and 2 real spike episodes"
                item.split(":")[0]: [int(w) for w in item.split() if w.isdigit()]
                for item in page.locator("li").all_inner_texts()
            }
            for path in pages[1:]:
                page.goto(path.as_uri())
                page.locator("svg.timeline-chart").first.wait_for(timeout=10_000)
                shot = shots / f"{path.stem}.png"
                page.screenshot(path=str(shot), full_page=True)
                widths = {  # a flat series (one version) has no height: measure its width
                    line.get_attribute("data-name"): line.evaluate(
                        "e => e.getBoundingClientRect().width"
                    )
                    for line in page.locator("polyline.series").all()
                }
                drawn[path.stem] = {
                    "widths": widths,
                    "limits": {
                        line.get_attribute("data-name") for line in page.locator("line.limit").all()
                    },
                    "predicted": page.locator("rect.episode.predicted").count(),
                    "real": page.locator("rect.episode.real").count(),
                    "table_rows": page.locator("table tr").count() - 1,
                    "listed": listed[path.stem],
                    "shot": shot,
                }
        finally:
            browser.close()
    assert not problems, problems
    assert links == len(pages) - 1
    return drawn


def _check(drawn: dict[str, dict], products: set[str], *, spikes: bool) -> None:
    """Every series and limit drawn across the page, one band per episode (and, with
    ``spikes``, at least one predicted and one real episode)."""
    assert set(drawn) == products
    for product, page in drawn.items():
        assert set(page["widths"]) == SERIES, product
        assert all(width > 1000 for width in page["widths"].values()), page["widths"]
        assert page["limits"] == {"threshold", "tau"}
        _scored, predicted, real = page["listed"]
        assert (page["predicted"], page["real"]) == (predicted, real), (product, page)
        assert page["table_rows"] == predicted  # one row per predicted episode
        if spikes:
            assert predicted >= 1 and real >= 1, (product, page)
        pixels = np.asarray(Image.open(page["shot"]).convert("L"), dtype=float)
        assert pixels.std() > 10, f"{page['shot']} is a blank page"


def test_the_timeline_of_a_replayed_simulated_recording(sqlite_registry, broker_address, tmp_path):
    write_recordings(
        tmp_path / "sim", ("BTC-USD", "ETH-USD"), seed=31, minutes=12, params=SPIKY_MARKET
    )
    recordings = [str(tmp_path / "sim")]
    settings = _replayed(sqlite_registry, broker_address, recordings)
    pages = _timelines(settings, recordings, tmp_path / "reports")
    assert [p.name for p in pages] == ["index.html", "BTC-USD.html", "ETH-USD.html"]
    _check(_draw(pages, tmp_path), {"BTC-USD", "ETH-USD"}, spikes=True)


def test_the_timeline_of_a_replayed_real_recording(
    sqlite_registry, broker_address, shared_recordings, tmp_path
):
    recordings = [str(shared_recordings[1])]  # the busy evening of Dec 5, 2025
    settings = _replayed(sqlite_registry, broker_address, recordings)
    pages = _timelines(settings, recordings, tmp_path / "reports")
    _check(_draw(pages, tmp_path), {"BTC-USD"}, spikes=False)
