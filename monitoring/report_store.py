"""The drift report folder, ``<data_dir>/reports/drift/`` (``Settings.reports_dir / "drift"``).

- ``<time>.html``: one Evidently report per check, with the check's summary section on top;
- ``history.jsonl``: one JSON entry per check (its figures and retraining decision);
- ``index.html``: every check newest first with its headline figures, rebuilt after each check;
- ``evidently-<version>.js``: Evidently's 3.4 MB viewer, written once and shared by every
  report instead of being inlined into each.

A report holds Evidently's per-feature distributions (about 2.7 MB for 30 features, 250 MB a
day at one check every 15 minutes), so reports older than ``Settings.reports_keep_days`` are
pruned; their history lines, and so the index's rows and charts, stay.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

from monitoring import pages
from tasks.io.files import writing

log = logging.getLogger("cryptovol.reports")

HISTORY_FILE = "history.jsonl"
INDEX_FILE = "index.html"


def drift_dir(reports_dir: Path) -> Path:
    return reports_dir / "drift"


def report_name(folder: Path, at: datetime) -> str:
    """``YYYYmmddTHHMMSSZ.html``, with a suffix when a report of that second exists."""
    base = at.strftime("%Y%m%dT%H%M%SZ")
    name, n = f"{base}.html", 1
    while (folder / name).exists():
        n += 1
        name = f"{base}-{n}.html"
    return name


def _evidently_viewer() -> tuple[str, str]:
    """(file name, text) of the JavaScript viewer Evidently inlines into every report."""
    import evidently

    static = Path(evidently.__path__[0]) / "nbextension" / "static" / "index.js"
    return f"evidently-{evidently.__version__}.js", static.read_text(encoding="utf-8")


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (:class:`~tasks.io.files.WriteError` naming it)."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with writing(path):
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def save_report(snapshot, folder: Path, name: str, section: str) -> Path:
    """Write the Evidently ``snapshot`` as ``folder/name`` with ``section`` at the top of the
    page and the viewer shared through a file beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    page = snapshot.get_html_str(as_iframe=False)
    viewer_name, viewer = _evidently_viewer()
    inline = f"<script>{viewer}</script>"
    if inline in page:
        viewer_path = folder / viewer_name
        if not viewer_path.exists():
            _write_atomic(viewer_path, viewer)
        page = page.replace(inline, f'<script src="{viewer_name}"></script>', 1)
    else:  # another Evidently page layout: keep the page self-contained
        log.warning("Evidently's viewer not found inline; the report keeps its own copy")
    body = page.find("<body>")
    if body < 0:
        raise ValueError("the Evidently page has no <body>")
    page = page[: body + len("<body>")] + section + page[body + len("<body>") :]
    path = folder / name
    _write_atomic(path, page)
    return path


def append_history(folder: Path, entry: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / HISTORY_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, default=str, allow_nan=False) + "\n")


def read_history(folder: Path) -> list[dict]:
    """Every recorded check, oldest first (a torn last line, from a crash, is skipped)."""
    path = folder / HISTORY_FILE
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping an unreadable line of %s", path)
    return entries


def prune(folder: Path, *, keep_days: float, now: datetime) -> list[str]:
    """Delete the reports of checks older than ``keep_days`` (their history lines stay)."""
    removed = []
    for entry in read_history(folder):
        if (now - datetime.fromisoformat(entry["time"])).total_seconds() > keep_days * 86400:
            path = folder / entry["report"]
            if path.exists():
                path.unlink()
                removed.append(entry["report"])
    return removed


def write_index(folder: Path, *, limit: float) -> Path:
    path = folder / INDEX_FILE
    folder.mkdir(parents=True, exist_ok=True)
    available = {p.name for p in folder.glob("*.html")}
    _write_atomic(path, pages.index_page(read_history(folder), limit=limit, available=available))
    return path
