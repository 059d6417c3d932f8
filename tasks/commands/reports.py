"""``cryptovol reports``: serve the report folder on 127.0.0.1, or print the drift index's path."""

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


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


def run(args: argparse.Namespace) -> int:
    from monitoring.report_store import INDEX_FILE, drift_dir

    settings = get_settings()
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
