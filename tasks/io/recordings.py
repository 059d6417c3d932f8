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

The backfill reads through :func:`read_tick_columns`: whole files at once, into columns, the same
ticks, refusals and bad lines as :func:`merged_ticks` checked tick by tick, about 2.8 times as
fast on the real recordings. Replay and the contracts stream line by line (:func:`read_ticks`,
:func:`merged_ticks`).
"""

from __future__ import annotations

import gzip
import heapq
import io
import itertools
import math
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import TypeVar

import numpy as np

from tasks.core.messages import (
    TICKER_NUMBER_FIELDS,
    Envelope,
    LineTicker,
    MessageError,
    RawTick,
    RecordedLine,
    TickColumns,
    check_ticks,
    collector_paused,
    decode_recorded_lines,
    parse_envelope,
    ticks_from_envelope,
)
from tasks.core.timeutil import TimestampError, parse_ts, parse_ts_many

NEIGHBOURS = 4  # lines on each side that bound a line's receive time
RECEIVE_WINDOW = 2 * NEIGHBOURS + 1
_HALF = NEIGHBOURS
_T = TypeVar("_T")


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


def _parse_line(name: str, lineno: int, line: bytes) -> _Parsed:
    """One non-blank line (with its newline, unless it is a cut-off last line), parsed."""
    try:
        envelope = parse_envelope(line)
    except MessageError as exc:
        shown = line[:200].decode("utf-8", errors="replace")
        cut = not line.endswith(b"\n")
        error = f"cut off (no newline at the end of the file): {exc}" if cut else str(exc)
        return lineno, BadLine(name, lineno, error, shown, truncated=cut), math.nan
    try:
        ts = parse_ts(envelope.timestamp)
    except TimestampError:
        ts = math.nan  # the tick is refused later, naming the timestamp
    return lineno, envelope, ts


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
            if line.strip():
                yield _parse_line(name, read, line)

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
    return _merge([(_first_time(p), partial(_receive_ordered, p)) for p in paths])


def _merge(
    sources: Sequence[tuple[float, Callable[[], Iterator[tuple[float, _T]]]]],
) -> Iterator[tuple[float, _T]]:
    """:func:`merge_by_receive_time` of sources given as (first receive time, opener), in the
    order of the input (the index that breaks ties)."""
    pending = sorted((first, i, opener) for i, (first, opener) in enumerate(sources))
    heap: list[tuple[float, int, int, _T, Iterator]] = []
    order = itertools.count()

    def push(index: int, lines: Iterator[tuple[float, _T]]) -> None:
        for ts, item in itertools.islice(lines, 1):
            heapq.heappush(heap, (ts, index, next(order), item, lines))

    position = 0
    while position < len(pending) or heap:
        while position < len(pending) and (not heap or pending[position][0] <= heap[0][0]):
            _, index, opener = pending[position]
            push(index, opener())
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


def _line_ticks(item: RecordedEnvelope, source: str) -> tuple[list[RawTick], list[BadLine]]:
    """The raw ticks of one recorded envelope, and a bad line for each ticker it refuses."""
    errors: list[str] = []
    try:
        ticks = envelope_ticks(item, source, errors)
    except Exception as exc:  # a poison line is that line's problem
        return [], [BadLine(item.path, item.lineno, f"unreadable envelope: {exc!r}", "")]
    return ticks, [BadLine(item.path, item.lineno, error, "") for error in errors]


def _ticks(items: Iterable[RecordedEnvelope | BadLine]) -> Iterator[RawTick | BadLine]:
    sources: dict[str, str] = {}
    for item in items:
        if isinstance(item, BadLine):
            yield item
            continue
        source = sources.get(item.path)
        if source is None:
            source = sources[item.path] = source_name(item.path)
        ticks, bad = _line_ticks(item, source)
        yield from ticks
        yield from bad


def read_ticks(paths: Iterable[Path]) -> Iterator[RawTick | BadLine]:
    """Raw tick records of every ``ticker`` envelope in the recordings, in file order."""
    return _ticks(read_envelopes(paths))


def merged_ticks(paths: Iterable[Path]) -> Iterator[RawTick | BadLine]:
    """Raw tick records of all the recordings in receive-time order: the order replay publishes
    them in, so the batch path sees each product's ticks as the stream does."""
    return _ticks(item for _ts, item in merge_by_receive_time(paths))


# The batch reader: whole files at once, as columns.


@dataclass(slots=True)
class RecordingsRead:
    """What :func:`read_tick_columns` gives: everything :func:`merged_ticks` yields, as columns."""

    columns: TickColumns  # the valid ticks, in the order of merged_ticks
    raw_ticks: dict[str, int] = field(default_factory=dict)  # ticker objects read, by file name
    refused: list[tuple[str, str, MessageError]] = field(default_factory=list)  # name, id, error
    bad_lines: list[BadLine] = field(default_factory=list)  # in the order of merged_ticks


@dataclass(slots=True)
class _FileRead:
    """One file's lines (non-blank, in file order) and ticks, checked."""

    path: Path
    keys: np.ndarray  # each line's receive time, as :func:`_receive_ordered` gives it
    columns: TickColumns  # the valid ticks, in file order
    tick_lines: np.ndarray  # the line (position in ``keys``) of each valid tick
    raw_ticks: int
    refused: list[tuple[int, str, MessageError]]  # line, record id, error
    bad_lines: list[tuple[int, BadLine]]  # line, bad line


def read_tick_columns(paths: Iterable[Path]) -> RecordingsRead:
    """:func:`merged_ticks` of the recordings checked by :func:`tasks.core.messages.to_tick`, as
    columns, with every refusal and bad line: the backfill's read.

    Each file is read whole (decompressed at once, its lines decoded into typed structs,
    timestamps parsed on columns, receive times estimated on arrays, ticks checked on columns);
    a line the typed decoder does not take, and a file that cannot be read whole (a damaged or
    cut-off gzip stream, invalid UTF-8), go through the line-by-line path of :func:`read_ticks`,
    so both read alike (a Hypothesis test compares them)."""
    with collector_paused():
        files = [_read_file(path) for path in paths]
    offsets = np.cumsum([0] + [len(f.keys) for f in files])
    rank = np.empty(int(offsets[-1]), dtype=np.int64)
    rank[_merge_order(files, offsets)] = np.arange(len(rank))
    tick_rank = np.concatenate(
        [rank[f.tick_lines + offset] for f, offset in zip(files, offsets, strict=False)]
        or [np.empty(0, dtype=np.int64)]
    )
    columns = TickColumns.concat([f.columns for f in files] or [TickColumns.from_ticks([])])
    read = RecordingsRead(columns.take(np.argsort(tick_rank, kind="stable")))
    refused, bad = [], []
    for f, offset in zip(files, offsets, strict=False):
        name = f.path.name
        read.raw_ticks[name] = read.raw_ticks.get(name, 0) + f.raw_ticks
        refused.extend((rank[line + offset], name, record, exc) for line, record, exc in f.refused)
        bad.extend((rank[line + offset], n, item) for n, (line, item) in enumerate(f.bad_lines))
    refused.sort(key=lambda r: r[0])
    bad.sort(key=lambda b: b[:2])
    read.refused = [(name, record, exc) for _, name, record, exc in refused]
    read.bad_lines = [item for *_, item in bad]
    return read


def _merge_order(files: Sequence[_FileRead], offsets: np.ndarray) -> np.ndarray:
    """The lines of all files (numbered across files) in :func:`_merge`'s order. When every
    file's receive times never decrease and a file's first line is its first timed one (or it
    has none), that order is the sort by (receive time, file, line): one call to numpy."""
    simple = all(
        not len(f.keys)
        or (f.keys[0] == _first_key(f.keys) and bool(np.all(f.keys[1:] >= f.keys[:-1])))
        for f in files
    )
    if simple:
        keys = np.concatenate([f.keys for f in files] or [np.empty(0)])
        index = np.repeat(np.arange(len(files)), [len(f.keys) for f in files])
        return np.lexsort((np.arange(len(keys)), index, keys))
    sources = [
        (_first_key(f.keys), partial(zip, f.keys.tolist(), itertools.count(int(offset))))
        for f, offset in zip(files, offsets, strict=False)
    ]
    return np.fromiter((line for _, line in _merge(sources)), dtype=np.int64, count=offsets[-1])


def _first_key(keys: np.ndarray) -> float:
    """:func:`_first_time` of a file's receive times."""
    finite = np.flatnonzero(keys > -math.inf)
    return float(keys[finite[0]]) if len(finite) else -math.inf


def _read_file(path: Path) -> _FileRead:
    name, source = str(path), source_name(path)
    whole = _whole_lines(path)
    if whole is None:  # read it line by line
        parsed = list(_parse_lines(path))
        typed: list[RecordedLine | None] = [None] * len(parsed)
    else:
        lines, cut = whole
        typed = decode_recorded_lines([line for _, line in lines])
        stamps = parse_ts_many([t.timestamp if t is not None else "" for t in typed])
        parsed = [
            (lineno, t, ts) if t is not None else _parse_line(name, lineno, line + b"\n")
            for (lineno, line), t, ts in zip(lines, typed, stamps.tolist(), strict=True)
        ]
        if cut and typed[-1] is None:  # judged again without the newline it lacks
            parsed[-1] = _parse_line(name, lines[-1][0], lines[-1][1])
    times = np.array([ts for _, _, ts in parsed], dtype=np.float64).reshape(len(parsed))
    texts = [item.timestamp if not isinstance(item, BadLine) else "" for _, item, _ in parsed]
    keys, received = _receive_times(times, texts)

    ids: list[str] = []
    seqs: list[int] = []
    indexes: list[int] = []
    tick_lines: list[int] = []
    tick_times: list[float] = []
    elsewhere: list[bool] = []
    tickers: list[LineTicker | dict] = []
    raws: dict[int, RawTick] = {}
    bad_lines: list[tuple[int, BadLine]] = []
    for position, ((lineno, item, ts), line) in enumerate(zip(parsed, typed, strict=True)):
        if line is not None:
            if line.channel != "ticker":
                continue
            events = line.events
            if len(events) == 1 and len(events[0].tickers) == 1:  # the usual line: one ticker
                ticker = events[0].tickers[0]
                ids.append(ticker.product_id)
                indexes.append(0)
                tickers.append(ticker)
                seqs.append(line.sequence_num)
                tick_lines.append(position)
                tick_times.append(ts)
                elsewhere.append(received[position] != line.timestamp)
                continue
            k = 0
            for event in line.events:
                for ticker in event.tickers:
                    ids.append(ticker.product_id)
                    indexes.append(k)
                    tickers.append(ticker)
                    k += 1
            if k:
                seqs.extend([line.sequence_num] * k)
                tick_lines.extend([position] * k)
                tick_times.extend([ts] * k)
                elsewhere.extend([received[position] != line.timestamp] * k)
            continue
        if isinstance(item, BadLine):
            bad_lines.append((position, item))
            continue
        receive_time = keys[position] if ts == ts else math.nan
        recorded = RecordedEnvelope(name, lineno, item, received[position], receive_time, ts)
        ticks, bad = _line_ticks(recorded, source)
        bad_lines.extend((position, b) for b in bad)
        for raw in ticks:
            raws[len(ids)] = raw
            ids.append(raw.product_id)
            seqs.append(raw.sequence_num)
            indexes.append(raw.index)
            tick_lines.append(position)
            tick_times.append(raw.event_time)
            elsewhere.append(raw.received_at != raw.timestamp or bool(raw.clock_offset_s))
            tickers.append(raw.ticker if raw.ticker.__class__ is dict else {})

    def raw_tick(i: int) -> RawTick:
        if i in raws:
            return raws[i]
        line = typed[tick_lines[i]]
        return RawTick(
            ids[i],
            line.timestamp,
            line.sequence_num,
            received[tick_lines[i]],
            source,
            "",
            indexes[i],
            tickers[i].as_dict(),
            0.0,
            tick_times[i],
        )

    values = (
        [[*map(attrgetter(name), tickers)] for name in TICKER_NUMBER_FIELDS] if not raws else []
    )
    if raws:
        values = [
            [t.get(name) if t.__class__ is dict else getattr(t, name) for t in tickers]
            for name in TICKER_NUMBER_FIELDS
        ]
    n = len(ids)
    columns, refused = check_ticks(
        ids,
        [source] * n,
        seqs,
        indexes,
        np.array(tick_times, dtype=np.float64).reshape(n),
        np.array(elsewhere, dtype=bool).reshape(n),
        values,
        raw_tick,
    )
    lines_of_ticks = np.array(tick_lines, dtype=np.int64).reshape(n)
    keep = np.ones(n, dtype=bool)
    keep[[i for i, _ in refused]] = False
    return _FileRead(
        path,
        keys,
        columns,
        lines_of_ticks[keep],
        n,
        [(tick_lines[i], f"{ids[i]}|{source}|{seqs[i]}|{indexes[i]}", exc) for i, exc in refused],
        bad_lines,
    )


def _whole_lines(path: Path) -> tuple[list[tuple[int, bytes]], bool] | None:
    """The numbered non-blank lines of a file read whole (without their newlines), and whether
    the last of them had none; None for a file that cannot be read whole cleanly (a damaged or
    cut-off gzip stream, invalid UTF-8, which the typed decoder would not see in the fields it
    skips)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = data.split(b"\n")
    cut = bool(parts[-1].strip())  # a last line with no newline after it
    return [(lineno, line) for lineno, line in enumerate(parts, start=1) if line.strip()], cut


def _receive_times(times: np.ndarray, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each line's receive time and its text, as :func:`_receive_ordered` estimates them, from
    every line's timestamp (NaN when it has none) and its text: a line whose window holds no step
    back keeps its own; the others ask :func:`_estimate`; an untimed line takes the previous
    line's receive time and keeps its own text."""
    timed = np.flatnonzero(~np.isnan(times))
    own = times[timed]
    keys_timed = own.copy()
    texts_timed = [texts[i] for i in timed.tolist()]
    chosen = list(texts_timed)
    m = len(own)
    steps = np.zeros(m, dtype=np.int64)
    steps[1:] = own[1:] < own[:-1]
    if steps.any():
        j = np.arange(m)
        start = np.maximum(0, np.minimum(np.maximum(j - _HALF, 0), m - RECEIVE_WINDOW))
        stop = np.minimum(start + RECEIVE_WINDOW, m)
        below = np.cumsum(steps)  # steps at or before each line
        for k in np.flatnonzero(below[stop - 1] - below[start] > 0).tolist():
            lo, hi = int(start[k]), int(stop[k])
            window = list(zip(own[lo:hi].tolist(), texts_timed[lo:hi], strict=True))
            keys_timed[k], chosen[k] = _estimate(window, k - lo)
    keys = np.full(len(times), -math.inf)
    keys[timed] = keys_timed
    if m < len(times):  # untimed lines carry the receive time of the timed line before them
        last = np.maximum.accumulate(np.where(~np.isnan(times), np.arange(len(times)), -1))
        carried = last >= 0
        keys[carried] = keys[last[carried]]
    received = list(texts)
    for i, text in zip(timed.tolist(), chosen, strict=True):
        received[i] = text
    return keys, received
