"""The drift index and a report's summary say when the persistence fall-back is served, since
when and why, and when the label's tau separates nothing."""

from __future__ import annotations

from monitoring.pages import index_page, summary_section

FALLBACK = {
    "version": "7",
    "since": "2026-12-05T14:00:00+00:00",
    "reason": "live PR-AUC below persistence for 2 consecutive checks (1h: 0.200 < 0.300)",
    "from_version": "5",
}


def entry(serving=None, fallback=None, live=None) -> dict:
    return {
        "time": "2026-12-05T14:05:00+00:00",
        "report": "r.html",
        "model": {"name": "volatility-spike", "version": "5"},
        "reference": {"source": "ref", "rows": 1},
        "current": {"source": "cur", "rows": 1},
        "drift": {"share": 0.1, "drifted": 0, "features": [], "prediction": None},
        "limit": 0.5,
        "live": live,
        "retrain": {"triggered": True, "why": FALLBACK["reason"]},
        "fallback": fallback,
        "serving_fallback": serving,
        "notes": [],
    }


def test_the_index_and_the_report_show_the_fallback_being_served():
    done = {"done": True, "version": "7", "from_version": "5", "why": FALLBACK["reason"]}
    page = index_page([entry(FALLBACK, done)], limit=0.5)
    assert "Serving the persistence fall-back</strong> (version 7) since 2026-12-05T14:00" in page
    assert "instead of version 5" in page and "fell back to persistence v7" in page
    summary = summary_section(entry(FALLBACK, done))
    assert "Fell back to persistence: version 7 is champion instead of 5" in summary
    quiet = index_page([entry()], limit=0.5)
    assert "persistence fall-back" not in quiet


def test_tau_separating_nothing_is_said_instead_of_a_figure():
    flat = {
        "1h": {
            "rows": 500,
            "positives": 500,
            "tau_degenerate": "every matured label is a "
            "spike: tau is below the whole volatility level",
            "pr_auc": None,
        }
    }
    assert "tau separates nothing" in index_page([entry(live=flat)], limit=0.5)
    assert "The label's tau separates nothing here: every matured label" in summary_section(
        entry(live=flat)
    )
