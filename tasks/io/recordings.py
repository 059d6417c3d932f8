"""Reading recordings: plain or gzip NDJSON, one exchange envelope per line.

Bad lines never stop a read: they are yielded as :class:`BadLine` with file and line number so the
caller can count them and report the first few.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tasks.core.messages import Envelope, MessageError, RawTick, parse_envelope, ticks_from_envelope


@dataclass(frozen=True, slots=True)
class BadLine:
    path: str
    lineno: int
    error: str
    line: str

    def describe(self) -> str:
        return f"{self.path}:{self.lineno}: {self.error}"


@dataclass(frozen=True, slots=True)
class RecordedEnvelope:
    path: str
    lineno: int
    envelope: Envelope


def is_recording(path: Path) -> bool:
    """A recording by its name: ``*.ndjson`` or ``*.ndjson.gz``."""
    return path.name.endswith((".ndjson", ".ndjson.gz"))


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; directories expand to their ``*.ndjson`` and ``*.ndjson.gz``, sorted."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [p for p in path.rglob("*") if is_recording(p)]
            paths.extend(sorted(found))
        elif path.exists():
            paths.append(path)
        else:
            raise FileNotFoundError(f"no such recording: {path}")
    return paths


def open_binary(path: Path) -> io.BufferedIOBase:
    """The file's bytes, gunzipped when it is gzip (recognised by its magic, not its name)."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def open_text(path: Path) -> io.TextIOBase:
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace")


def read_envelopes(paths: Iterable[Path]) -> Iterator[RecordedEnvelope | BadLine]:
    """Every line of every file, parsed as an envelope or reported as a bad line.

    Lines are decoded strictly: invalid UTF-8 makes a bad line rather than a silently altered
    one. A truncated gzip stream (a recorder killed mid-write) ends its file with one bad line.
    """
    for path in paths:
        name = str(path)
        lineno = 0
        try:
            with open_binary(path) as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield RecordedEnvelope(name, lineno, parse_envelope(line))
                    except MessageError as exc:
                        shown = line[:200].decode("utf-8", errors="replace")
                        yield BadLine(name, lineno, str(exc), shown)
        except (EOFError, OSError) as exc:
            yield BadLine(name, lineno + 1, f"unreadable: {exc}", "")


def source_name(path: str | Path) -> str:
    """The sequence space of a recording: its file name (sequence numbers restart per file)."""
    return Path(path).name


def read_ticks(paths: Iterable[Path]) -> Iterator[RawTick | BadLine]:
    """Raw tick records of every ``ticker`` envelope in the recordings, in file order.

    The recorded envelope timestamp doubles as receive time: recordings keep no other.
    """
    sources: dict[str, str] = {}
    for item in read_envelopes(paths):
        if isinstance(item, BadLine):
            yield item
            continue
        source = sources.get(item.path)
        if source is None:
            source = sources[item.path] = source_name(item.path)
        errors: list[str] = []
        yield from ticks_from_envelope(
            item.envelope, received_at=item.envelope.timestamp, source=source, errors=errors
        )
        for error in errors:
            yield BadLine(item.path, item.lineno, error, "")
