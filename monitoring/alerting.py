"""Alertmanager's configuration, command line and local inbox.

Alertmanager 0.25 (Debian's) reads no environment variables and has no file receiver. So the
configuration ``monitoring/alertmanager.yml`` is a template rendered with the receivers a user
configures by environment, and the default receiver is a small webhook server, the *inbox*, that
appends every notification to a file under the data dir. The stack, the compose deployment and the
tests render, start and read it through the functions here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tasks.settings import Settings

TEMPLATE = Path(__file__).resolve().parent / "alertmanager.yml"
# The receivers that reach a person, and which of the user's channels each uses: a page and a
# predicted spike go everywhere, a ticket (warning) only to the generic webhook.
OUTSIDE_CHANNELS = {
    "page": ("webhook", "slack"),
    "spikes": ("webhook", "slack"),
    "ticket": ("webhook",),
}
SLACK_TITLE = '{{ if eq .Status "firing" }}:rotating_light:{{ else }}:white_check_mark:{{ end }} {{ .CommonLabels.alertname }} {{ .CommonLabels.product }}'  # noqa: E501
SLACK_TEXT = "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}"


def inbox_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.alert_inbox_port}/"


def render_config(settings: Settings, out: Path, *, inbox: str | None = None) -> Path:
    """The template with the inbox at ``inbox`` (default: the local one) and the user's webhook
    and Slack receivers (``CRYPTOVOL_ALERT_WEBHOOK_URL``, ``CRYPTOVOL_ALERT_SLACK_URL``)."""
    config: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    channels = {
        "webhook": {"webhook_configs": {"url": settings.alert_webhook_url, "send_resolved": True}},
        "slack": {
            "slack_configs": {
                "api_url": settings.alert_slack_url,
                "channel": settings.alert_slack_channel,
                "send_resolved": True,
                "title": SLACK_TITLE,
                "text": SLACK_TEXT,
            }
        },
    }
    configured = {
        "webhook": bool(settings.alert_webhook_url),
        "slack": bool(settings.alert_slack_url),
    }
    receivers = []
    for receiver in config["receivers"]:
        receiver = {
            "name": receiver["name"],
            "webhook_configs": [{"url": inbox or inbox_url(settings), "send_resolved": True}],
        }
        for channel in OUTSIDE_CHANNELS.get(receiver["name"], ()):
            if configured[channel]:
                ((key, entry),) = channels[channel].items()
                receiver.setdefault(key, []).append(dict(entry))
        receivers.append(receiver)
    config["receivers"] = receivers
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def alertmanager_argv(binary: str, config: Path, port: int, storage: Path) -> tuple[str, ...]:
    """Alertmanager on 127.0.0.1:``port``, alone (no cluster peers), its state in ``storage``."""
    return (
        binary,
        f"--config.file={config}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    )


class _InboxHandler(BaseHTTPRequestHandler):
    path_out: Path
    lock: threading.Lock

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            notification = json.loads(body)
        except ValueError:
            self.send_error(400, "the body is not JSON")
            return
        with self.lock, self.path_out.open("a") as out:
            out.write(json.dumps(notification, separators=(",", ":")) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """The health check."""
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def inbox_server(path: Path, host: str, port: int) -> ThreadingHTTPServer:
    """A webhook receiver that appends each notification (Alertmanager's JSON) as a line to
    ``path``; call ``serve_forever`` on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = type("InboxHandler", (_InboxHandler,), {"path_out": path, "lock": threading.Lock()})
    return ThreadingHTTPServer((host, port), handler)


def read_inbox(path: Path) -> Iterator[dict]:
    """The notifications the inbox received, oldest first (none when it has no file yet)."""
    if not path.exists():
        return
    with path.open() as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)
