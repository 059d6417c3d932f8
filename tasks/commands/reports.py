"""``cryptovol reports``: serve the report folder on 127.0.0.1, or print the drift index's path.

With ``--timeline``, first write the per-product timelines of a span (the last ``--hours``, or
the event time of ``--recordings`` that were replayed) from the stream (monitoring/timeline.py).
"""

from __future__ import annotations

import argparse
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, help="port to serve on (default: CRYPTOVOL_REPORTS_PORT, 8090)"
    )
    parser.add_argument(
        "--print", action="store_true", help="print the drift index's path and exit"
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="write the timelines of predictions against the market first (from the stream)",
    )
    parser.add_argument(
        "--hours", type=float, default=6.0, help="with --timeline: the last HOURS (default 6)"
    )
    parser.add_argument(
        "--recordings",
        nargs="+",
        metavar="PATH",
        help="with --timeline: draw these replayed recordings whole (their raw ticks are read "
        "from the files)",
    )
    parser.add_argument(
        "--no-serve", action="store_true", help="with --timeline: write the pages and exit"
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


def _write_timelines(settings, hours: float, recordings: list[str] | None):
    import time

    from monitoring.timeline import span_of_recordings, write_timelines
    from tasks.io import model_store, registry
    from tasks.io.reference import resolve_model

    model = resolve_model(settings, registry.model_uri(settings))
    label = model_store.load_predictor(model.uri).label
    if recordings:
        since, until = span_of_recordings(recordings)
    else:
        until = time.time()
        since = until - hours * 3600.0
    return write_timelines(settings, label, since, until, raw=recordings)


def run(args: argparse.Namespace) -> int:
    from monitoring.report_store import INDEX_FILE, drift_dir

    settings = get_settings()
    if args.timeline:
        pages = _write_timelines(settings, args.hours, args.recordings)
        print(f"timelines: {pages[0].resolve()} ({len(pages) - 1} products)", flush=True)
        if args.no_serve:
            return 0
    index = drift_dir(settings.reports_dir) / INDEX_FILE
    if args.print:
        if not index.exists():
            print(f"no drift report yet ({index} does not exist): run `cryptovol drift`")
            return 1
        print(index.resolve())
        return 0
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    port = settings.reports_port if args.port is None else args.port
    handler = functools.partial(_QuietHandler, directory=str(settings.reports_dir))
    try:
        server = ThreadingHTTPServer((settings.metrics_host, port), handler)
    except OSError as exc:
        print(f"error: cannot serve on {settings.metrics_host}:{port}: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"serving {settings.reports_dir.resolve()} on http://{host}:{port}/", flush=True)
    print(f"drift reports: http://{host}:{port}/drift/index.html (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
