"""``cryptovol alert-inbox``: the local webhook receiver Alertmanager delivers to by default
(each notification appended to ``<data_dir>/alerts/inbox.jsonl``), or, with ``--render-config``,
write Alertmanager's configuration with the receivers configured in the environment."""

from __future__ import annotations

import argparse
from pathlib import Path

from tasks.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: CRYPTOVOL_METRICS_HOST)")
    parser.add_argument("--port", type=int, help="default: CRYPTOVOL_ALERT_INBOX_PORT, 9094")
    parser.add_argument("--out", type=Path, help="default: <data_dir>/alerts/inbox.jsonl")
    parser.add_argument(
        "--render-config",
        type=Path,
        metavar="PATH",
        help="write Alertmanager's configuration to PATH and exit",
    )
    parser.add_argument(
        "--inbox-url", help="with --render-config: where Alertmanager reaches the inbox"
    )


def run(args: argparse.Namespace) -> int:
    from monitoring.alerting import inbox_server, render_config

    settings = get_settings()
    if args.render_config:
        print(render_config(settings, args.render_config, inbox=args.inbox_url))
        return 0
    out = args.out or settings.alert_inbox_path
    host = args.host or settings.metrics_host
    server = inbox_server(out, host, settings.alert_inbox_port if args.port is None else args.port)
    print(f"alert inbox on http://{host}:{server.server_address[1]}/ writing {out}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
