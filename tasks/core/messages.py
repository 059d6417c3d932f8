"""Advanced Trade messages: envelopes in, one raw tick record per ticker out. Pure.

A record on ``ticks.raw`` keeps the exchange's ticker object unchanged and adds the envelope
timestamp, its sequence number, the local receive time and the connection (or file) it came on.
Sequence numbers restart on every connection, so a tick is identified by product, source and
sequence (and its position inside the envelope, for envelopes that carry several tickers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from tasks.core.timeutil import TimestampError, parse_ts

RAW_SCHEMA_VERSION = 1

TICKER_CHANNEL = "ticker"
HEARTBEATS_CHANNEL = "heartbeats"
SUBSCRIPTIONS_CHANNEL = "subscriptions"


class MessageError(ValueError):
    """A message that does not have the shape the exchange promises."""


@dataclass(frozen=True, slots=True)
class Envelope:
    channel: str
    timestamp: str
    sequence_num: int
    events: list[dict[str, Any]]
    raw: dict[str, Any]


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

    @property
    def record_id(self) -> str:
        return f"{self.product_id}|{self.source}|{self.sequence_num}|{self.index}"

    def to_record(self) -> dict[str, Any]:
        return {
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

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_record(), separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RawTick:
        try:
            version = record["schema_version"]
            if version != RAW_SCHEMA_VERSION:
                raise MessageError(f"unsupported schema_version {version!r}")
            ticker = record["ticker"]
            if not isinstance(ticker, dict):
                raise MessageError("ticker is not an object")
            return cls(
                product_id=str(record["product_id"]),
                timestamp=str(record["timestamp"]),
                sequence_num=int(record["sequence_num"]),
                received_at=str(record["received_at"]),
                source=str(record["source"]),
                event_type=str(record["event_type"]),
                index=int(record.get("index", 0)),
                ticker=ticker,
            )
        except KeyError as exc:
            raise MessageError(f"raw record is missing {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MessageError):
                raise
            raise MessageError(f"raw record has a bad field: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes | str) -> RawTick:
        try:
            record = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MessageError(f"not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise MessageError("raw record is not a JSON object")
        return cls.from_record(record)


def parse_envelope(message: dict[str, Any] | str | bytes) -> Envelope:
    """Check the outer shape of an exchange message; the payload is left as sent."""
    if isinstance(message, str | bytes):
        try:
            message = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MessageError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MessageError("message is not a JSON object")
    if message.get("type") == "error" or "channel" not in message:
        raise MessageError(f"not a channel message: {str(message)[:200]}")
    events = message.get("events", [])
    if not isinstance(events, list):
        raise MessageError("events is not a list")
    try:
        sequence_num = int(message.get("sequence_num", -1))
    except (TypeError, ValueError) as exc:
        raise MessageError(f"bad sequence_num {message.get('sequence_num')!r}") from exc
    timestamp = message.get("timestamp")
    if not isinstance(timestamp, str):
        raise MessageError("timestamp missing")
    return Envelope(str(message["channel"]), timestamp, sequence_num, events, message)


def ticks_from_envelope(
    envelope: Envelope, *, received_at: str, source: str, errors: list[str] | None = None
) -> list[RawTick]:
    """Every ticker object of a ``ticker`` envelope, in order; other channels give none.

    A malformed event or ticker raises :class:`MessageError`, unless ``errors`` is given: then
    it is described there and skipped, and the envelope's good tickers are still returned.
    ``index`` is the ticker's position in the envelope either way, so record ids stay stable.
    """
    if envelope.channel != TICKER_CHANNEL:
        return []
    ticks: list[RawTick] = []
    index = 0

    def bad(message: str) -> None:
        if errors is None:
            raise MessageError(message)
        errors.append(f"seq {envelope.sequence_num}: {message}")

    for event in envelope.events:
        tickers = event.get("tickers", []) if isinstance(event, dict) else None
        if not isinstance(tickers, list):
            bad("event is not an object with a list of tickers")
            continue
        for ticker in tickers:
            if not isinstance(ticker, dict) or not isinstance(ticker.get("product_id"), str):
                bad(f"ticker {index} has no product_id")
            else:
                ticks.append(
                    RawTick(
                        product_id=ticker["product_id"],
                        timestamp=envelope.timestamp,
                        sequence_num=envelope.sequence_num,
                        received_at=received_at,
                        source=source,
                        event_type=str(event.get("type", "update")),
                        index=index,
                        ticker=ticker,
                    )
                )
            index += 1
    return ticks


@dataclass(frozen=True, slots=True)
class Tick:
    """The numeric view of a raw tick that features are computed from.

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


def _number(ticker: dict[str, Any], name: str, *, required: bool) -> float:
    value = ticker.get(name)
    if value is None or value == "":
        if required:
            raise MessageError(f"ticker field {name!r} is missing")
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"ticker field {name!r} is not a number: {value!r}") from exc
    if not math.isfinite(number):
        raise MessageError(f"ticker field {name!r} is not finite: {value!r}")
    return number


def to_tick(raw: RawTick) -> Tick:
    """Parse and check a raw tick; raise :class:`MessageError` naming the offending field."""
    t = raw.ticker
    try:
        ts = parse_ts(raw.timestamp)
    except TimestampError as exc:
        raise MessageError(f"timestamp: {exc}") from exc
    price = _number(t, "price", required=True)
    if price <= 0:
        raise MessageError(f"ticker field 'price' is not positive: {t.get('price')!r}")
    bid = _number(t, "best_bid", required=False)
    ask = _number(t, "best_ask", required=False)
    if bid <= 0 or ask <= 0:
        raise MessageError(
            f"best_bid/best_ask not positive: {t.get('best_bid')!r}/{t.get('best_ask')!r}"
        )
    if bid > ask:
        raise MessageError(f"crossed book: best_bid {bid} > best_ask {ask}")
    bid_qty = _number(t, "best_bid_quantity", required=False)
    ask_qty = _number(t, "best_ask_quantity", required=False)
    if bid_qty < 0 or ask_qty < 0:
        raise MessageError("negative best bid/ask quantity")
    return Tick(
        product_id=raw.product_id,
        ts=ts,
        source=raw.source,
        sequence_num=raw.sequence_num,
        index=raw.index,
        price=price,
        best_bid=bid,
        best_ask=ask,
        best_bid_quantity=bid_qty,
        best_ask_quantity=ask_qty,
        volume_24h=_number(t, "volume_24_h", required=False),
    )
