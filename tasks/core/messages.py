"""Advanced Trade messages: envelopes in, one raw tick record per ticker out. Pure.

A record on ``ticks.raw`` keeps the exchange's ticker object unchanged and adds the envelope
timestamp, its sequence number, the local receive time and the connection (or file) it came on.
Sequence numbers restart on every connection, so a tick is identified by product, source and
sequence (and its position inside the envelope, for envelopes that carry several tickers).

Event time is bounded by receive time (:func:`to_tick`): a tick stamped more than
:data:`MAX_LEAD_S` after it was received, or more than :data:`MAX_LAG_S` before, is refused with
the reason, so one bad timestamp cannot move a product's clock a year ahead (every later tick
would be too late) nor sort itself years back. Receive time is on the exchange's clock:
``received_at + clock_offset_s``. Capture measures ``clock_offset_s`` per connection (the median
of its recent messages' timestamp minus local receive time), so a skewed local clock or a
simulated exchange running in the past is no offender; recordings keep no receive time and
estimate it from the neighbouring lines (:mod:`tasks.io.recordings`), offset 0.

Every decoder here turns any malformed input, however deep or strange, into
:class:`MessageError`: a poison record is that record's problem only. Text is decoded by msgspec
into a typed shape first (the shape only: the rules below are still asked); text that does not fit
it takes the generic path, so both accept and refuse alike, with the same reasons.

What a valid tick is, is decided here once, and every reader (recordings, ``ticks.raw``, the raw
contract, the scorer's feature records for the product id) asks these functions:

- a product id is the exchange's ``BASE-QUOTE`` shape (:func:`check_product_id`): upper-case
  letters and digits in two to four dash-separated parts, at most :data:`MAX_PRODUCT_ID_LEN`
  characters. The same id names archive folders and feature-store partitions, so ``..``, ``/``
  or a 10 KB id never reach a file name;
- a sequence number is an integer in ``[0, MAX_SEQUENCE_NUM]``, or -1 for none
  (:func:`check_sequence_num`): 2^53 - 1 is the largest integer every JSON reader (a double)
  holds exactly, far beyond what a connection ever counts to;
- prices (trade, best bid and ask) lie in ``[MIN_PRICE, MAX_PRICE]`` and sizes (quantities, 24-h
  volume) in ``[0, MAX_SIZE]``: twelve orders of magnitude either side of 1 hold every quote the
  exchange lists (BTC near 1e5 USD, meme coins near 1e-5, BTC-quoted pairs near 1e-8), and they
  keep every term of the feature engine finite: a log return is at most ``log(1e24)`` (55) and its
  square at most 3100, so no sum over a window can overflow;
- a timestamp is ISO 8601 in UTC (``Z`` or ``+00:00``; :func:`tasks.core.timeutil.parse_ts`) and
  lies near its receive time (above).
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import numpy as np

from tasks.core.timeutil import TimestampError, parse_ts

RAW_SCHEMA_VERSION = 1
MAX_LEAD_S = 30.0  # event time may run ahead of receive time by this much (clock jitter)
MAX_LAG_S = 300.0  # and lag behind it by this much (network, a busy reader)

MAX_SEQUENCE_NUM = 2**53 - 1
NO_SEQUENCE = -1  # a message without a sequence number
MIN_PRICE = 1e-12
MAX_PRICE = 1e12
MAX_SIZE = 1e18  # quantities and 24-h volume (SHIB trades about 1e13 coins a day)
MAX_PRODUCT_ID_LEN = 40
_PRODUCT_ID = re.compile(r"[A-Z0-9]{1,16}(?:-[A-Z0-9]{1,16}){1,3}")

TICKER_CHANNEL = "ticker"
HEARTBEATS_CHANNEL = "heartbeats"
SUBSCRIPTIONS_CHANNEL = "subscriptions"


class MessageError(ValueError):
    """A message that does not have the shape the exchange promises."""


def is_product_id(value: object) -> bool:
    """True for an id of the exchange's shape (module docstring): safe as a file name."""
    if value.__class__ is str and value in _PRODUCT_IDS_SEEN:
        return True
    valid = (
        isinstance(value, str)
        and len(value) <= MAX_PRODUCT_ID_LEN
        and _PRODUCT_ID.fullmatch(value) is not None
    )
    if valid and value.__class__ is str and len(_PRODUCT_IDS_SEEN) < _PRODUCT_IDS_KEPT:
        _PRODUCT_IDS_SEEN.add(value)
    return valid


# valid ids met so far: a market has a few hundred products, so most checks are one lookup
_PRODUCT_IDS_SEEN: set[str] = set()
_PRODUCT_IDS_KEPT = 10_000


def product_id_error(value: object, name: str = "product_id") -> str:
    """Why ``value`` is no product id, naming the field."""
    return (
        f"{name}: not a product id (BASE-QUOTE, A-Z and 0-9, at most "
        f"{MAX_PRODUCT_ID_LEN} characters): {preview(value, 60)}"
    )


def check_product_id(value: object, name: str = "product_id") -> str:
    """``value`` if it is a product id, else :class:`MessageError` naming the field ``name``."""
    if not is_product_id(value):
        raise MessageError(product_id_error(value, name))
    return value  # type: ignore[return-value]


def is_sequence_num(number: int) -> bool:
    """True for a sequence number in range (module docstring)."""
    return number == NO_SEQUENCE or 0 <= number <= MAX_SEQUENCE_NUM


def check_sequence_num(value: object, name: str = "sequence_num") -> int:
    """An integer (or its decimal text) in ``[0, MAX_SEQUENCE_NUM]`` or -1, else
    :class:`MessageError`; ``True`` and ``1.9`` are refused rather than silently converted."""
    if type(value) is int:
        number = value
    else:
        try:
            if isinstance(value, bool | float):
                raise TypeError
            number = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError) as exc:
            raise MessageError(f"{name}: not an integer: {preview(value, 60)}") from exc
    if not is_sequence_num(number):
        raise MessageError(
            f"{name}: {preview(number, 60)} out of range (0 to 2^53 - 1, or -1 for none)"
        )
    return number


@dataclass(frozen=True, slots=True)
class Envelope:
    channel: str
    timestamp: str
    sequence_num: int
    events: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RawTick:
    """One ticker object as it travels on ``ticks.raw``."""

    product_id: str
    timestamp: str
    sequence_num: int
    received_at: str
    source: str
    event_type: str
    index: int
    ticker: dict[str, Any]
    clock_offset_s: float = 0.0  # exchange clock minus the receiver's clock (module docstring)
    # ``timestamp`` parsed, when the reader has parsed it already (not part of the record)
    event_time: float = field(default=math.nan, compare=False, repr=False)

    @property
    def record_id(self) -> str:
        return f"{self.product_id}|{self.source}|{self.sequence_num}|{self.index}"

    def to_record(self) -> dict[str, Any]:
        record = {
            "schema_version": RAW_SCHEMA_VERSION,
            "product_id": self.product_id,
            "timestamp": self.timestamp,
            "sequence_num": self.sequence_num,
            "received_at": self.received_at,
            "source": self.source,
            "event_type": self.event_type,
            "index": self.index,
            "ticker": self.ticker,
        }
        if self.clock_offset_s:  # optional: absent means 0 (recordings, older records)
            record["clock_offset_s"] = self.clock_offset_s
        return record

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_record(), separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RawTick:
        try:
            version = record["schema_version"]
            if version != RAW_SCHEMA_VERSION:
                raise MessageError(f"unsupported schema_version {preview(version)}")
            ticker = record["ticker"]
            if not isinstance(ticker, dict):
                raise MessageError("ticker is not an object")
            offset = float(record.get("clock_offset_s", 0.0))
            if not math.isfinite(offset):
                raise MessageError(f"clock_offset_s is not finite: {offset!r}")
            return cls(
                product_id=_text(record, "product_id"),
                timestamp=_text(record, "timestamp"),
                sequence_num=check_sequence_num(record["sequence_num"]),
                received_at=_text(record, "received_at"),
                source=_text(record, "source"),
                event_type=_text(record, "event_type"),
                index=int(record.get("index", 0)),
                ticker=ticker,
                clock_offset_s=offset,
            )
        except KeyError as exc:
            raise MessageError(f"raw record is missing {exc.args[0]!r}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, MessageError):
                raise
            raise MessageError(f"raw record has a bad field: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes | str) -> RawTick:
        try:
            typed = _RAW_RECORD.decode(data)
        except _NOT_THE_SHAPE:
            pass  # the generic reader below takes it or names what is wrong
        else:
            if typed.schema_version == RAW_SCHEMA_VERSION and is_sequence_num(typed.sequence_num):
                return cls(
                    typed.product_id,
                    typed.timestamp,
                    typed.sequence_num,
                    typed.received_at,
                    typed.source,
                    typed.event_type,
                    typed.index,
                    typed.ticker,
                    typed.clock_offset_s,
                )
        record = decode_json(data)
        if not isinstance(record, dict):
            raise MessageError("raw record is not a JSON object")
        return cls.from_record(record)


class _RawRecordShape(msgspec.Struct):
    """The shape of a well-formed ``ticks.raw`` record, for the fast decoder: a record that does
    not fit it exactly (a number as text, a missing field, bad JSON) takes the generic path of
    :meth:`RawTick.from_record`, which accepts or refuses it and names the field. Its floats are
    finite: msgspec refuses NaN and infinities in JSON."""

    schema_version: int
    product_id: str
    timestamp: str
    sequence_num: int
    received_at: str
    source: str
    event_type: str
    ticker: dict[str, Any]
    index: int = 0
    clock_offset_s: float = 0.0


class _EnvelopeShape(msgspec.Struct):
    """The shape of a well-formed exchange message, for the fast decoder (as above, anything else
    takes the generic path of :func:`parse_envelope`)."""

    channel: str
    timestamp: str
    sequence_num: int = NO_SEQUENCE
    events: list[dict[str, Any]] = []
    type: Any = None


class _RawTickShape(_RawRecordShape):
    """The same record with its ticker left as JSON text, for :func:`tick_from_bytes`."""

    ticker: msgspec.Raw


_PRICE = Annotated[float, msgspec.Meta(ge=MIN_PRICE, le=MAX_PRICE)]
# above zero: a zero written "-0" would come out +0.0 here and -0.0 from ``float``, so zeros take
# the generic path
_SIZE = Annotated[float, msgspec.Meta(gt=0.0, le=MAX_SIZE)]


class _TickerNumbers(msgspec.Struct):
    """A ticker's numbers as :func:`to_tick` takes them, read by a lax decoder (numbers sent as
    text, as the exchange does): only a decimal number in range fits; anything else (null, an
    empty string, a zero, text ``float`` takes but JSON does not write) takes the generic path.
    Absent optional numbers are NaN."""

    price: _PRICE
    best_bid: _PRICE = math.nan
    best_ask: _PRICE = math.nan
    best_bid_quantity: _SIZE = math.nan
    best_ask_quantity: _SIZE = math.nan
    volume_24_h: _SIZE = math.nan


_RAW_RECORD = msgspec.json.Decoder(_RawRecordShape)
_RAW_TICK = msgspec.json.Decoder(_RawTickShape)
_TICKER_NUMBERS = msgspec.json.Decoder(_TickerNumbers, strict=False)
# what the typed decoders raise for input they do not take (bad JSON, another shape, a str that
# is no valid UTF-8, nesting too deep)
_NOT_THE_SHAPE = (msgspec.MsgspecError, TypeError, ValueError, RecursionError)
_ENVELOPE = msgspec.json.Decoder(_EnvelopeShape)


class LineTicker(msgspec.Struct, gc=False):
    """A ticker as recordings carry it, the fields :func:`to_tick` reads (the rest skipped)."""

    product_id: str
    price: str | None = None
    best_bid: str | None = None
    best_ask: str | None = None
    best_bid_quantity: str | None = None
    best_ask_quantity: str | None = None
    volume_24_h: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ticker as :func:`to_tick` reads it (absent fields left out)."""
        return {
            name: value
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not None
        }


class _LineEvent(msgspec.Struct, gc=False):
    type: str = "update"
    tickers: list[LineTicker] = []


class RecordedLine(msgspec.Struct, gc=False):
    """The shape of a well-formed recording line, for the batch reader's fast decoder
    (:func:`decode_recorded_lines`): every line it takes, :func:`parse_envelope` and
    :func:`ticks_from_envelope` take alike, with the same tickers."""

    channel: str
    timestamp: str
    sequence_num: int = NO_SEQUENCE
    events: list[_LineEvent] = []
    type: Any = None


_RECORDED_LINE = msgspec.json.Decoder(RecordedLine)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused: a bulk read makes objects by the hundred
    thousand and no cycles, so its collections (each walking every live object) only cost time
    (a third of the read). Nests: only the outermost pause restarts it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def decode_recorded_lines(lines: Sequence[bytes]) -> list[RecordedLine | None]:
    """Each line in the typed shape, or None where the generic path must judge it (bad JSON,
    another shape, an error message, a sequence number or product id out of the rules).

    The lines must be valid UTF-8 (the caller checks whole blocks): the typed decoder skips the
    fields it does not read without looking into their text."""
    decode = _RECORDED_LINE.decode
    decoded: list[RecordedLine | None] = []
    add = decoded.append
    with collector_paused():
        for line in lines:
            try:
                typed = decode(line)
            except _NOT_THE_SHAPE:
                add(None)
                continue
            add(typed if typed.type != "error" and is_sequence_num(typed.sequence_num) else None)
    ids = {
        ticker.product_id
        for line in decoded
        if line is not None and line.channel == TICKER_CHANNEL
        for event in line.events
        for ticker in event.tickers
    }
    invalid = {product_id for product_id in ids if not is_product_id(product_id)}
    if invalid:
        for i, line in enumerate(decoded):
            if line is None or line.channel != TICKER_CHANNEL:
                continue
            if any(t.product_id in invalid for event in line.events for t in event.tickers):
                decoded[i] = None
    return decoded


def _text(record: dict[str, Any], name: str) -> str:
    """A string field; anything else (a number, an object) is a bad field, not coerced."""
    value = record[name]
    if not isinstance(value, str):
        raise MessageError(f"raw record field {name!r} is not a string: {preview(value)}")
    return value


def decode_json(data: bytes | str) -> Any:
    """JSON text to a value; whatever is wrong with it (syntax, encoding, nesting deeper than
    the interpreter recurses) is a :class:`MessageError`."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise MessageError("not JSON this reader accepts: nested too deeply") from exc
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise MessageError(f"not JSON: {exc}") from exc


def preview(value: Any, limit: int = 200) -> str:
    """The start of a value's text, for error messages; never raises (deep values included)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text[:limit]


def parse_envelope(message: dict[str, Any] | str | bytes) -> Envelope:
    """Check the outer shape of an exchange message; the payload is left as sent.

    Text is decoded by a typed decoder first; a message it does not take goes through the same
    checks as a decoded one, so both paths accept and refuse alike, with the same reasons."""
    if isinstance(message, str | bytes):
        try:
            typed = _ENVELOPE.decode(message)
        except _NOT_THE_SHAPE:
            pass
        else:
            if typed.type != "error" and is_sequence_num(typed.sequence_num):
                return Envelope(typed.channel, typed.timestamp, typed.sequence_num, typed.events)
        try:
            message = json.loads(message)
        except Exception:  # the one decoder names what is wrong
            message = decode_json(message)
    if not isinstance(message, dict):
        raise MessageError("message is not a JSON object")
    if message.get("type") == "error" or "channel" not in message:
        raise MessageError(f"not a channel message: {preview(message)}")
    events = message.get("events", [])
    if not isinstance(events, list):
        raise MessageError("events is not a list")
    sequence_num = check_sequence_num(message.get("sequence_num", NO_SEQUENCE))
    timestamp = message.get("timestamp")
    if not isinstance(timestamp, str):
        raise MessageError("timestamp missing")
    channel = message["channel"]
    if not isinstance(channel, str):
        raise MessageError(f"channel is not a string: {preview(channel)}")
    return Envelope(channel, timestamp, sequence_num, events)


def ticks_from_envelope(
    envelope: Envelope,
    *,
    received_at: str,
    source: str,
    errors: list[str] | None = None,
    clock_offset_s: float = 0.0,
    event_time: float = math.nan,
) -> list[RawTick]:
    """Every ticker object of a ``ticker`` envelope, in order; other channels give none.

    A malformed event or ticker raises :class:`MessageError`, unless ``errors`` is given: then
    it is described there and skipped, and the envelope's good tickers are still returned.
    ``index`` is the ticker's position in the envelope either way, so record ids stay stable.
    """
    if envelope.channel != TICKER_CHANNEL:
        return []
    ticks: list[RawTick] = []
    timestamp, sequence_num = envelope.timestamp, envelope.sequence_num
    index = 0
    for event in envelope.events:
        tickers = event.get("tickers", []) if isinstance(event, dict) else None
        if not isinstance(tickers, list):
            _refuse(errors, sequence_num, "event is not an object with a list of tickers")
            continue
        event_type = None
        for ticker in tickers:
            product_id = ticker.get("product_id") if isinstance(ticker, dict) else None
            if not isinstance(product_id, str):
                _refuse(errors, sequence_num, f"ticker {index} has no product_id")
            elif not is_product_id(product_id):
                _refuse(errors, sequence_num, f"ticker {index}: " + product_id_error(product_id))
            else:
                if event_type is None:
                    event_type = str(event.get("type", "update"))
                ticks.append(
                    RawTick(
                        product_id,
                        timestamp,
                        sequence_num,
                        received_at,
                        source,
                        event_type,
                        index,
                        ticker,
                        clock_offset_s,
                        event_time,
                    )
                )
            index += 1
    return ticks


def _refuse(errors: list[str] | None, sequence_num: int, message: str) -> None:
    """A malformed event or ticker: raised, or described in ``errors`` when it is given."""
    if errors is None:
        raise MessageError(message)
    errors.append(f"seq {sequence_num}: {message}")


@dataclass(slots=True)  # not frozen: a frozen dataclass of 11 fields costs 3 us more to build
class Tick:
    """The numeric view of a raw tick that features are computed from; treat as immutable.

    Optional inputs the exchange may omit (quantities, bid/ask) are NaN, never zero.
    """

    product_id: str
    ts: float
    source: str
    sequence_num: int
    index: int
    price: float
    best_bid: float
    best_ask: float
    best_bid_quantity: float
    best_ask_quantity: float
    volume_24h: float

    @property
    def record_id(self) -> str:
        return f"{self.product_id}|{self.source}|{self.sequence_num}|{self.index}"

    @property
    def mid(self) -> float:
        """The mid price: halfway between best bid and ask, else the last trade price."""
        bid, ask = self.best_bid, self.best_ask
        return (bid + ask) * 0.5 if bid == bid and ask == ask else self.price


def _number(ticker: dict[str, Any], name: str, low: float, high: float, *, required: bool) -> float:
    """A ticker field as a float in ``[low, high]``; NaN when absent and not ``required``."""
    value = ticker.get(name)
    if value.__class__ is str:  # the exchange sends numbers as text: the quick way first
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if low <= number <= high:
            return number
    if value is None or value == "":
        if required:
            raise MessageError(f"ticker field {name!r} is missing")
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MessageError(f"ticker field {name!r} is not a number: {preview(value)}") from exc
    if not low <= number <= high:
        problem = "out of range" if math.isfinite(number) else "not finite"
        raise MessageError(
            f"ticker field {name!r} is {problem} (a number in [{low:g}, {high:g}]): "
            f"{preview(value)}"
        )
    return number


def receive_lead_s(ts: float, raw: RawTick | _RawRecordShape) -> float:
    """Seconds the event time ``ts`` lies after the receive time on the exchange's clock
    (0 when the receive time is unknown: an empty ``received_at``)."""
    if not raw.received_at:
        return 0.0
    if raw.received_at == raw.timestamp:
        received = ts
    else:
        try:
            received = parse_ts(raw.received_at)
        except TimestampError as exc:
            raise MessageError(f"received_at: {exc}") from exc
    return ts - (received + raw.clock_offset_s)


def check_event_time(ts: float, raw: RawTick | _RawRecordShape) -> None:
    """Refuse an event time implausibly far from the receive time (module docstring)."""
    lead = receive_lead_s(ts, raw)
    if lead > MAX_LEAD_S:
        raise MessageError(
            f"event time: {lead:.3f} s after its receive time (at most {MAX_LEAD_S:g} s): "
            f"{preview(raw.timestamp)}"
        )
    if lead < -MAX_LAG_S:
        raise MessageError(
            f"event time: {-lead:.3f} s before its receive time (at most {MAX_LAG_S:g} s): "
            f"{preview(raw.timestamp)}"
        )


def _event_time(raw: RawTick | _RawRecordShape, ts: float = math.nan) -> float:
    """The event time of a raw tick (``ts`` when already parsed), checked against its receive
    time."""
    if ts != ts:
        try:
            ts = parse_ts(raw.timestamp)
        except TimestampError as exc:
            raise MessageError(f"timestamp: {exc}") from exc
    if raw.received_at != raw.timestamp or raw.clock_offset_s:  # else it was received at ts
        check_event_time(ts, raw)
    return ts


def _check_book(bid: float, ask: float) -> None:
    if bid > ask:
        raise MessageError(f"crossed book: best_bid {bid} > best_ask {ask}")


def to_tick(raw: RawTick) -> Tick:
    """Parse and check a raw tick; raise :class:`MessageError` naming the offending field."""
    t = raw.ticker
    if not isinstance(t, dict):
        raise MessageError("ticker is not an object")
    ts = _event_time(raw, raw.event_time)
    product_id = check_product_id(raw.product_id)
    price = _number(t, "price", MIN_PRICE, MAX_PRICE, required=True)
    bid = _number(t, "best_bid", MIN_PRICE, MAX_PRICE, required=False)
    ask = _number(t, "best_ask", MIN_PRICE, MAX_PRICE, required=False)
    _check_book(bid, ask)
    bid_qty = _number(t, "best_bid_quantity", 0.0, MAX_SIZE, required=False)
    ask_qty = _number(t, "best_ask_quantity", 0.0, MAX_SIZE, required=False)
    return Tick(
        product_id=product_id,
        ts=ts,
        source=raw.source,
        sequence_num=raw.sequence_num,
        index=raw.index,
        price=price,
        best_bid=bid,
        best_ask=ask,
        best_bid_quantity=bid_qty,
        best_ask_quantity=ask_qty,
        volume_24h=_number(t, "volume_24_h", 0.0, MAX_SIZE, required=False),
    )


@dataclass(slots=True)
class TickColumns:
    """Ticks as columns, in arrival order (the fields of :class:`Tick`): what the batch path
    reads (:func:`tick_columns`) and the feature engine runs at once."""

    product_id: Sequence[str]
    source: Sequence[str]
    ts: np.ndarray
    sequence_num: np.ndarray  # int64, -1 for none
    index: np.ndarray  # int64
    price: np.ndarray
    best_bid: np.ndarray  # NaN when absent, as the quantities and the volume
    best_ask: np.ndarray
    best_bid_quantity: np.ndarray
    best_ask_quantity: np.ndarray
    volume_24h: np.ndarray

    @classmethod
    def from_ticks(cls, ticks: Iterable[Tick]) -> TickColumns:
        ticks = list(ticks)
        numbers = np.array(
            [
                (
                    t.ts,
                    t.price,
                    t.best_bid,
                    t.best_ask,
                    t.best_bid_quantity,
                    t.best_ask_quantity,
                    t.volume_24h,
                )
                for t in ticks
            ],
            dtype=np.float64,
        ).reshape(len(ticks), 7)
        codes = np.array([(t.sequence_num, t.index) for t in ticks], dtype=np.int64)
        codes = codes.reshape(len(ticks), 2)
        return cls(
            [t.product_id for t in ticks],
            [t.source for t in ticks],
            numbers[:, 0].copy(),
            codes[:, 0].copy(),
            codes[:, 1].copy(),
            *(numbers[:, k].copy() for k in range(1, 7)),
        )

    @classmethod
    def concat(cls, parts: Sequence[TickColumns]) -> TickColumns:
        if len(parts) == 1:
            return parts[0]
        return cls(
            [p for part in parts for p in part.product_id],
            [s for part in parts for s in part.source],
            *(np.concatenate([getattr(part, name) for part in parts]) for name in _NUMERIC_COLUMNS),
        )

    def __len__(self) -> int:
        return len(self.ts)

    def record_id(self, i: int) -> str:
        """The record id of tick ``i``, as :attr:`Tick.record_id`."""
        return f"{self.product_id[i]}|{self.source[i]}|{self.sequence_num[i]}|{self.index[i]}"

    def select(self, mask: np.ndarray) -> TickColumns:
        """The ticks where ``mask`` is true, in order."""
        where = np.flatnonzero(mask).tolist()
        return TickColumns(
            [self.product_id[i] for i in where],
            [self.source[i] for i in where],
            *(getattr(self, name)[mask] for name in _NUMERIC_COLUMNS),
        )

    def take(self, order: np.ndarray) -> TickColumns:
        """The ticks at positions ``order``, in that order."""
        where = order.tolist()
        return TickColumns(
            [self.product_id[i] for i in where],
            [self.source[i] for i in where],
            *(getattr(self, name)[order] for name in _NUMERIC_COLUMNS),
        )

    def to_ticks(self) -> list[Tick]:
        rows = zip(*(getattr(self, name).tolist() for name in _NUMERIC_COLUMNS), strict=True)
        return [
            Tick(product_id, ts, source, seq, index, *numbers)
            for product_id, source, (ts, seq, index, *numbers) in zip(
                self.product_id, self.source, rows, strict=True
            )
        ]


_NUMERIC_COLUMNS = (
    "ts",
    "sequence_num",
    "index",
    "price",
    "best_bid",
    "best_ask",
    "best_bid_quantity",
    "best_ask_quantity",
    "volume_24h",
)
# the ticker's numbers as to_tick reads them: (name, low, high, required)
_TICKER_BOUNDS = (
    ("price", MIN_PRICE, MAX_PRICE, True),
    ("best_bid", MIN_PRICE, MAX_PRICE, False),
    ("best_ask", MIN_PRICE, MAX_PRICE, False),
    ("best_bid_quantity", 0.0, MAX_SIZE, False),
    ("best_ask_quantity", 0.0, MAX_SIZE, False),
    ("volume_24_h", 0.0, MAX_SIZE, False),
)
# the ticker's numbers, in the order check_ticks takes their columns
TICKER_NUMBER_FIELDS = tuple(name for name, *_ in _TICKER_BOUNDS)


def tick_columns(raws: Sequence[RawTick]) -> tuple[TickColumns, list[tuple[int, MessageError]]]:
    """:func:`to_tick` of many raw ticks at once: the valid ones as columns (in order), and the
    position and error of each refused one, the very error ``to_tick`` raises."""
    tickers = [raw.ticker if raw.ticker.__class__ is dict else {} for raw in raws]
    event_time = np.array([raw.event_time for raw in raws], dtype=np.float64).reshape(len(raws))
    received_elsewhere = np.array(
        [raw.received_at != raw.timestamp or bool(raw.clock_offset_s) for raw in raws], dtype=bool
    ).reshape(len(raws))
    return check_ticks(
        [raw.product_id for raw in raws],
        [raw.source for raw in raws],
        [raw.sequence_num for raw in raws],
        [raw.index for raw in raws],
        event_time,
        received_elsewhere,
        [[ticker.get(name) for ticker in tickers] for name, *_ in _TICKER_BOUNDS],
        raws.__getitem__,
    )


def check_ticks(
    product_ids: list[str],
    sources: list[str],
    sequence_nums: list[int],
    indexes: list[int],
    event_time: np.ndarray,
    received_elsewhere: np.ndarray,
    values: list[list[Any]],
    raw_tick: Callable[[int], RawTick],
) -> tuple[TickColumns, list[tuple[int, MessageError]]]:
    """:func:`tick_columns` on raw ticks given as columns: ``event_time`` NaN where the timestamp
    is still to parse, ``received_elsewhere`` where the receive time is not the event time (to
    check), ``values`` the ticker's numbers (``_TICKER_BOUNDS``, None when absent, a ticker
    that is no object has none) and ``raw_tick(i)`` the raw tick ``i`` itself.

    The checks run on whole columns; a tick they do not clear outright (a field missing, out of
    range or not a plain number, a crossed book, an event time to parse or to hold against its
    receive time) goes through :func:`to_tick` itself, so there is one definition of a valid tick
    and every refusal keeps its reason. Numbers parse as ``float`` parses them (numpy does)."""
    n = len(product_ids)
    ts = event_time.copy()
    slow = np.isnan(ts) | received_elsewhere
    invalid = {p for p in set(product_ids) if not is_product_id(p)}
    if invalid:
        slow[[i for i, p in enumerate(product_ids) if p in invalid]] = True
    numbers = []
    for (_name, low, high, required), column_values in zip(_TICKER_BOUNDS, values, strict=True):
        column = _floats(column_values)
        for i in np.flatnonzero(~((low <= column) & (column <= high))):
            value = column_values[i]
            if required or not (value is None or value == ""):
                slow[i] = True  # to_tick names what is wrong, or takes it
        numbers.append(column)
    slow |= numbers[1] > numbers[2]  # a crossed book
    refused = []
    for i in np.flatnonzero(slow):
        try:
            tick = to_tick(raw_tick(i))
        except MessageError as exc:
            refused.append((int(i), exc))
            continue
        ts[i] = tick.ts
        for column, value in zip(
            numbers,
            (
                tick.price,
                tick.best_bid,
                tick.best_ask,
                tick.best_bid_quantity,
                tick.best_ask_quantity,
                tick.volume_24h,
            ),
            strict=True,
        ):
            column[i] = value
    keep = np.ones(n, dtype=bool)
    keep[[i for i, _ in refused]] = False
    kept = np.flatnonzero(keep).tolist() if refused else range(n)
    columns = TickColumns(
        [product_ids[i] for i in kept],
        [sources[i] for i in kept],
        ts[keep],
        np.array([sequence_nums[i] for i in kept], dtype=np.int64).reshape(len(kept)),
        np.array([indexes[i] for i in kept], dtype=np.int64).reshape(len(kept)),
        *(column[keep] for column in numbers),
    )
    return columns, refused


def _floats(values: list[Any]) -> np.ndarray:
    """``float(value)`` of each value, NaN where it fails (or the value is missing)."""
    try:
        column = np.array(values, dtype=np.float64)
        if column.shape == (len(values),):
            return column
    except (TypeError, ValueError, OverflowError):
        pass
    return np.array([_float_or_nan(value) for value in values], dtype=np.float64).reshape(
        len(values)
    )


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def tick_from_bytes(data: bytes | str) -> Tick:
    """The tick of a ``ticks.raw`` record: ``to_tick(RawTick.from_bytes(data))``, with the same
    result or the same error. A record of the well-formed shape (what stream consumers meet) is
    read in one pass by typed decoders, its ticker's numbers included, without building the
    ticker's dict; anything else takes the generic path."""
    try:
        record = _RAW_TICK.decode(data)
        numbers = _TICKER_NUMBERS.decode(record.ticker)
    except _NOT_THE_SHAPE:
        return to_tick(RawTick.from_bytes(data))
    if record.schema_version != RAW_SCHEMA_VERSION or not is_sequence_num(record.sequence_num):
        return to_tick(RawTick.from_bytes(data))
    ts = _event_time(record)
    product_id = check_product_id(record.product_id)
    _check_book(numbers.best_bid, numbers.best_ask)
    return Tick(
        product_id,
        ts,
        record.source,
        record.sequence_num,
        record.index,
        numbers.price,
        numbers.best_bid,
        numbers.best_ask,
        numbers.best_bid_quantity,
        numbers.best_ask_quantity,
        numbers.volume_24_h,
    )
