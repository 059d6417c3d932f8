"""The raw archive: every exchange message, unchanged, in rotated gzip NDJSON files.

Layout, under ``<data_dir>/archive``::

    <key>/<key>_<YYYYMMDD_HHMMSS>_<source>.ndjson.gz

- ``key`` is the product id of a ticker message that concerns one product; ``_multi`` for a
  ticker message carrying several products' tickers; ``_control`` for everything else
  (subscriptions, heartbeats, errors, anything unparseable, and a ticker whose product id is
  not one by :func:`tasks.core.messages.is_product_id`: the rule that keeps ``..``, ``/`` and
  overlong ids out of file names). Each message is written exactly once,
  so replaying the whole archive gives every ticker once, with no duplicates.
- ``source`` is the capture connection the message came on. Sequence numbers restart on every
  connection, and readers use the file name as the sequence space
  (:func:`tasks.io.recordings.source_name`), so one file never mixes two connections.
- The time is the receive time (UTC) of the file's first message. A file is rotated when the hour
  of receive time changes, so names sort chronologically and no file spans two hours.

Files are written with periodic sync flushes, so a run killed mid-write leaves everything up to
the last flush readable; :mod:`tasks.io.recordings` reports the truncated tail as one bad line.

The archive is the durable copy, so a write that fails (a full disk, a data dir that is a file, a
read-only mount) is not absorbed: it raises :class:`ArchiveWriteError` naming the path, and the
writer counts a line in ``stats.lines`` only once a flush has handed it to the file.
"""

from __future__ import annotations

import gzip
import re
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.messages import TICKER_CHANNEL, Envelope, is_product_id
from tasks.io.files import WriteError, writing

CONTROL_KEY = "_control"
MULTI_KEY = "_multi"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ArchiveWriteError(WriteError):
    """The archive could not be written; not an ``OSError``, so the exchange client, which takes
    those for network problems, does not retry it."""


def archive_key(envelope: Envelope | None) -> str:
    """The folder a message belongs in: its product, ``_multi`` or ``_control``."""
    if envelope is None or envelope.channel != TICKER_CHANNEL:
        return CONTROL_KEY
    products = {
        ticker.get("product_id")
        for event in envelope.events
        if isinstance(event, dict) and isinstance(event.get("tickers"), list)
        for ticker in event["tickers"]
        if isinstance(ticker, dict)
    }
    if len(products) > 1:
        return MULTI_KEY
    product = next(iter(products), None)
    return product if is_product_id(product) else CONTROL_KEY


@dataclass
class _OpenFile:
    hour: int
    path: Path
    handle: gzip.GzipFile
    pending: int = 0  # lines written to the compressor, not yet flushed to the file


@dataclass
class ArchiveStats:
    lines: int = 0
    files: list[Path] = field(default_factory=list)


class ArchiveWriter:
    """Appends raw message lines to the archive; one open file per (key, source).

    Any failure to write raises :class:`ArchiveWriteError`; the writer should then be closed
    (which finishes the files it still can) and not written to again.
    """

    def __init__(self, root: Path, *, compresslevel: int = 6, flush_every_s: float = 1.0) -> None:
        self.root = Path(root)
        self.compresslevel = compresslevel
        self.flush_every_s = flush_every_s
        self.stats = ArchiveStats()
        self._open: dict[tuple[str, str], _OpenFile] = {}
        self._last_flush = time.monotonic()

    def prepare(self) -> None:
        """Create the archive folder now, so an unusable data dir fails before capture starts."""
        with _writing(self.root):
            self.root.mkdir(parents=True, exist_ok=True)

    def write(self, text: str | bytes, key: str, source: str, received_at: float) -> None:
        """Append one message as received (``received_at`` in epoch seconds picks the hour)."""
        hour = int(received_at // 3600)
        current = self._open.get((key, source))
        if current is None or current.hour != hour:
            if current is not None:
                self._finish(self._open.pop((key, source)))
            current = self._open_file(key, source, received_at, hour)
            self._open[(key, source)] = current
        data = text.encode() if isinstance(text, str) else text
        with _writing(current.path):
            current.handle.write(data + b"\n")
        current.pending += 1
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every_s:
            self.flush()
            self._last_flush = now

    def _open_file(self, key: str, source: str, received_at: float, hour: int) -> _OpenFile:
        folder = self.root / key
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(received_at))
        path = folder / f"{key}_{stamp}_{_UNSAFE.sub('_', source)}.ndjson.gz"
        with _writing(path):
            folder.mkdir(parents=True, exist_ok=True)
            # Append mode: should a name ever repeat, a second gzip member is still valid gzip.
            handle = gzip.GzipFile(path, mode="ab", compresslevel=self.compresslevel)
        self.stats.files.append(path)
        return _OpenFile(hour, path, handle)

    def flush(self) -> None:
        """Make everything written so far readable, without ending the files."""
        for current in self._open.values():
            with _writing(current.path):
                current.handle.flush()
            self.stats.lines += current.pending
            current.pending = 0

    def _finish(self, current: _OpenFile) -> None:
        """Close one file; its lines count once the gzip trailer is on disk."""
        with _writing(current.path):
            current.handle.close()
        self.stats.lines += current.pending
        current.pending = 0

    def close_source(self, source: str) -> None:
        """Finish the files of one connection (it will send nothing more)."""
        for key in [k for k in self._open if k[1] == source]:
            self._finish(self._open.pop(key))

    def close(self) -> None:
        """Finish every open file; the first failure is raised after all were tried."""
        failure: ArchiveWriteError | None = None
        for current in self._open.values():
            try:
                self._finish(current)
            except ArchiveWriteError as exc:
                failure = failure or exc
        self._open.clear()
        if failure is not None:
            raise failure

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _writing(path: Path) -> AbstractContextManager[None]:
    return writing(path, "the raw archive", ArchiveWriteError)
