"""Reading recordings: plain or gzip NDJSON, one exchange envelope per line.

Bad lines never stop a read: they are yielded as :class:`BadLine` with file and line number so the
caller can count them and report the first few. Whatever goes wrong with one line (bad JSON,
nesting too deep for the parser, a shape the exchange never sends) is that line's problem.

A file's lines are in the order they were received, but recordings keep no receive time. Each
line's is estimated from its neighbours in the file: receive time never decreases along the file,
so it lies at or after the times of the lines before and at or before those of the lines after.
The estimate is the line's own timestamp clamped between the second latest of the
:data:`NEIGHBOURS` lines before it and the second earliest of the ones after it (one wild
neighbour on either side changes nothing; contradicting bounds fall back to the median of the
nearest ``2 * NEIGHBOURS + 1`` lines). For lines in order the estimate is their own timestamp; a
line stamped far from its neighbours (a year ahead, or years back) gets theirs, and
:func:`tasks.core.messages.to_tick` refuses it, in replay and backfill alike. A line with fewer
than two lines on one side is unbounded there: a far-ahead timestamp on a file's last line (or a
far-behind one on its first) cannot be told from a gap and passes. The same estimate orders
files against each other (:func:`merge_by_receive_time`), so batch and stream see every product's
ticks in the same order.

A writer killed mid-write leaves a cut-off tail: a gzip stream without its end, or a last line
without its newline that does not parse. It is reported as one bad line marked ``truncated``, so
the contract counts it apart from the bad lines in the body (:mod:`data_contracts.validate`).
"""

from __future__ import annotations

import gzip
import heapq
import io
import itertools
import math
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tasks.core.messages import (
    Envelope,
    MessageError,
    RawTick,
    parse_envelope,
    ticks_from_envelope,
)
from tasks.core.timeutil import TimestampError, parse_ts

NEIGHBOURS = 4  # lines on each side that bound a line's receive time
RECEIVE_WINDOW = 2 * NEIGHBOURS + 1
_HALF = NEIGHBOURS


@dataclass(frozen=True, slots=True)
class BadLine:
    path: str
    lineno: int
    error: str
    line: str
    truncated: bool = False  # the cut-off tail of a file whose writer stopped mid-write

    def describe(self) -> str:
        return f"{self.path}:{self.lineno}: {self.error}"


@dataclass(frozen=True, slots=True)
class RecordedEnvelope:
    path: str
    lineno: int
    envelope: Envelope
    received_at: str  # estimated receive time: the timestamp text of the line it comes from
    received: float  # the same in epoch seconds; NaN if no line of the file has a valid one
    event_time: float = math.nan  # the envelope's timestamp, parsed (NaN if it does not parse)


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


# One parsed line: (line number, envelope or bad line, event time or NaN).
_Parsed = tuple[int, Envelope | BadLine, float]


def _parse_lines(path: Path) -> Iterator[_Parsed]:
    """Every non-blank line of one file, parsed; a cut-off tail is one truncated bad line.

    A file that starts with the gzip magic but is no gzip stream is read as plain lines (its first
    line is then a bad line); one whose compressed data is corrupt ends with an unreadable line.
    """
    name = str(path)
    read = 0  # lines read so far

    def parsed(fh: io.BufferedIOBase) -> Iterator[_Parsed]:
        nonlocal read
        for read, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                envelope = parse_envelope(line)
            except MessageError as exc:
                shown = line[:200].decode("utf-8", errors="replace")
                cut = not line.endswith(b"\n")
                error = f"cut off (no newline at the end of the file): {exc}" if cut else str(exc)
                yield read, BadLine(name, read, error, shown, truncated=cut), math.nan
                continue
            try:
                ts = parse_ts(envelope.timestamp)
            except TimestampError:
                ts = math.nan  # the tick is refused later, naming the timestamp
            yield read, envelope, ts

    fh = None
    try:
        with open_binary(path) as fh:
            yield from parsed(fh)
    except EOFError as exc:
        error = f"cut off (the gzip stream ends early: its writer stopped mid-file): {exc}"
        yield read + 1, BadLine(name, read + 1, error, "", truncated=True), math.nan
    except (OSError, zlib.error) as exc:
        error = f"unreadable: {exc}"
        if read == 0 and isinstance(fh, gzip.GzipFile):  # the magic was a coincidence
            try:
                with path.open("rb") as plain:
                    yield from parsed(plain)
                return
            except OSError as again:
                error = f"unreadable: {again}"
        yield read + 1, BadLine(name, read + 1, error, ""), math.nan


def _estimate(window: list[tuple[float, str]], pos: int) -> tuple[float, str]:
    """The receive time of ``window[pos]`` from its neighbours (module docstring)."""
    own = window[pos]
    before = sorted(window[max(0, pos - NEIGHBOURS) : pos])
    after = sorted(window[pos + 1 : pos + 1 + NEIGHBOURS])
    low = before[-2] if len(before) >= 2 else None
    high = after[1] if len(after) >= 2 else None
    if low is not None and high is not None and low[0] > high[0]:
        return sorted(window)[(len(window) - 1) // 2]
    if low is not None and own[0] < low[0]:
        return low
    if high is not None and own[0] > high[0]:
        return high
    return own


def _receive_ordered(path: Path) -> Iterator[tuple[float, RecordedEnvelope | BadLine]]:
    """One file's lines in order as (receive time, line); a line without one (a bad line, an
    unparseable timestamp) carries the previous line's, ``-inf`` at the start.

    Timed line ``j`` (counting the lines with a valid timestamp) is estimated from the window of
    :data:`RECEIVE_WINDOW` timed lines from ``max(0, min(j - NEIGHBOURS, n - window))`` on:
    centred, shifted inwards at the file's ends. A window is final once its last line is read (or
    the file ends), so the read runs a few lines ahead, never the whole file. A window in order
    (no line earlier than the one before it) estimates every line as its own timestamp, so only
    windows with a step back are sorted. A line whose timestamp does not parse keeps it as its
    receive time; its ticks are refused for it anyway.
    """
    name = str(path)
    pending: deque[_Parsed] = deque()  # read, not yet yielded, in file order
    times: list[float] = []  # timestamps of timed lines from number `base` on
    texts: list[str] = []  # and their text
    base = count = emitted = 0  # first kept, read, yielded (timed lines)
    descents: deque[int] = deque()  # timed lines earlier than the one before them, ascending
    last = key = -math.inf
    final = False
    add, take = pending.append, pending.popleft
    for parsed in itertools.chain(_parse_lines(path), (None,)):
        if parsed is None:
            final = True
        else:
            add(parsed)
            ts = parsed[2]
            if ts == ts:  # bad lines and unparseable timestamps are NaN
                times.append(ts)
                texts.append(parsed[1].timestamp)
                if ts < last:
                    descents.append(count)
                last = ts
                count += 1
        while pending:
            lineno, item, ts = pending[0]
            if ts != ts:
                take()
                if isinstance(item, BadLine):
                    yield key, item
                else:
                    yield key, RecordedEnvelope(name, lineno, item, item.timestamp, math.nan)
                continue
            start = emitted - _HALF if emitted > _HALF else 0
            if final:
                start = max(0, min(start, count - RECEIVE_WINDOW))
            elif count < start + RECEIVE_WINDOW:
                break
            stop = start + RECEIVE_WINDOW
            while descents and descents[0] <= start:
                descents.popleft()  # its step lies before every window still to come
            if descents and descents[0] < stop:
                lo, hi = start - base, stop - base
                window = list(zip(times[lo:hi], texts[lo:hi], strict=True))
                key, text = _estimate(window, emitted - start)
            else:
                key, text = ts, item.timestamp
            take()
            emitted += 1
            yield key, RecordedEnvelope(name, lineno, item, text, key, ts)
        keep = min(emitted - _HALF, count - RECEIVE_WINDOW) - base  # every later window is after
        if keep > 4096:
            del times[:keep], texts[:keep]
            base += keep


def read_envelopes(paths: Iterable[Path]) -> Iterator[RecordedEnvelope | BadLine]:
    """Every line of every file, parsed as an envelope or reported as a bad line.

    Lines are decoded strictly: invalid UTF-8 makes a bad line rather than a silently altered
    one. A truncated gzip stream (a recorder killed mid-write) ends its file with one bad line.
    """
    for path in paths:
        for _key, item in _receive_ordered(path):
            yield item


def source_name(path: str | Path) -> str:
    """The sequence space of a recording: its file name (sequence numbers restart per file)."""
    return Path(path).name


def _first_time(path: Path) -> float:
    for ts, _ in _receive_ordered(path):
        if ts > -math.inf:
            return ts
    return -math.inf


def merge_by_receive_time(
    paths: Iterable[Path],
) -> Iterator[tuple[float, RecordedEnvelope | BadLine]]:
    """Every line of every file as (receive time, line), merged in receive-time order.

    Each file keeps its own line order; ties go to the earlier file. A file is opened only when
    the merge reaches its first receive time, so a long archive holds few files open at once.
    """
    pending = sorted((_first_time(p), i, p) for i, p in enumerate(paths))
    heap: list[tuple[float, int, int, RecordedEnvelope | BadLine, Iterator]] = []
    order = itertools.count()

    def push(index: int, lines: Iterator[tuple[float, RecordedEnvelope | BadLine]]) -> None:
        for ts, item in itertools.islice(lines, 1):
            heapq.heappush(heap, (ts, index, next(order), item, lines))

    position = 0
    while position < len(pending) or heap:
        while position < len(pending) and (not heap or pending[position][0] <= heap[0][0]):
            _, index, path = pending[position]
            push(index, _receive_ordered(path))
            position += 1
        if not heap:
            continue
        ts, index, _, item, lines = heapq.heappop(heap)
        yield ts, item
        # the same file goes on without the heap while its lines come first (most of the time)
        for ts, item in lines:
            if (heap and (ts, index) >= heap[0][:2]) or (
                position < len(pending) and pending[position][0] <= ts
            ):
                heapq.heappush(heap, (ts, index, next(order), item, lines))
                break
            yield ts, item


def envelope_ticks(
    item: RecordedEnvelope, source: str, errors: list[str] | None = None
) -> list[RawTick]:
    """The raw tick records of one recorded envelope, with its estimated receive time."""
    return ticks_from_envelope(
        item.envelope,
        received_at=item.received_at,
        source=source,
        errors=errors,
        event_time=item.event_time,
    )


def _ticks(items: Iterable[RecordedEnvelope | BadLine]) -> Iterator[RawTick | BadLine]:
    sources: dict[str, str] = {}
    for item in items:
        if isinstance(item, BadLine):
            yield item
            continue
        source = sources.get(item.path)
        if source is None:
            source = sources[item.path] = source_name(item.path)
        errors: list[str] = []
        try:
            ticks = envelope_ticks(item, source, errors)
        except Exception as exc:  # a poison line is that line's problem
            yield BadLine(item.path, item.lineno, f"unreadable envelope: {exc!r}", "")
            continue
        yield from ticks
        for error in errors:
            yield BadLine(item.path, item.lineno, error, "")


def read_ticks(paths: Iterable[Path]) -> Iterator[RawTick | BadLine]:
    """Raw tick records of every ``ticker`` envelope in the recordings, in file order."""
    return _ticks(read_envelopes(paths))


def merged_ticks(paths: Iterable[Path]) -> Iterator[RawTick | BadLine]:
    """Raw tick records of all the recordings in receive-time order: the order replay publishes
    them in, so the batch path sees each product's ticks as the stream does."""
    return _ticks(item for _ts, item in merge_by_receive_time(paths))
