"""From feature values to a model's input array, and from a score to a ``ticks.predictions``
record. Pure.

One path turns feature values by name into the predictor's array, for the HTTP service (rows of a
request) and the stream scorer (records of ``ticks.features``) alike: names the row leaves out, or
gives as null, are missing (NaN), never zero, and are listed per row.

A prediction record carries the id of the feature record it scores (which is the raw tick's id),
so a feature record delivered twice gives two predictions with one id and a reader drops one.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from tasks.core.features import FEATURES_SCHEMA_VERSION
from tasks.core.messages import (
    _NOT_THE_SHAPE,
    MessageError,
    decode_json,
    is_product_id,
    preview,
    product_id_error,
)
from tasks.core.timeutil import TimestampError, parse_ts

PREDICTIONS_SCHEMA_VERSION = 1
# Score histogram buckets, 0.05 .. 1.0 in steps of 0.05 (the metrics contract).
SCORE_BUCKETS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))
_FLOAT_MAX = sys.float_info.max


class FeatureRecordError(ValueError):
    """A ``ticks.features`` record that cannot be scored (the message says why)."""


def feature_array(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> tuple[np.ndarray, list[list[str]]]:
    """The float array (one row per mapping, columns ``names`` in order) and each row's missing
    names. Values must already be numbers or None: validation is the caller's edge."""
    nan = math.nan
    matrix = np.empty((len(rows), len(names)), dtype=float)
    missing: list[list[str]] = []
    for i, row in enumerate(rows):
        values = [row.get(name) for name in names]
        absent = [name for name, v in zip(names, values, strict=True) if v is None]
        matrix[i] = [nan if v is None else v for v in values] if absent else values
        missing.append(absent)
    return matrix, missing


@dataclass(frozen=True, slots=True)
class FeatureRecord:
    """The parts of a ``ticks.features`` record a prediction needs."""

    record_id: str
    product_id: str
    ts: str  # the feature event time as the record gives it (ISO 8601 UTC)
    event_ts: float  # the same, in epoch seconds
    feature_set_version: str
    features: dict[str, float | None]


class _FeatureRecordShape(msgspec.Struct):
    """The shape of a well-formed feature record, for the fast decoder: its numbers are finite
    floats or null (msgspec refuses NaN, infinities and numbers a float cannot hold). A record
    that does not fit takes the generic path, which accepts or refuses it and says why."""

    schema_version: int
    record_id: str
    product_id: str
    ts: str
    feature_set_version: str
    features: dict[str, float | None]


_FEATURE_RECORD = msgspec.json.Decoder(_FeatureRecordShape)
_STRING_FIELDS = ("record_id", "product_id", "ts", "feature_set_version")


def parse_feature_record(value: bytes | None) -> FeatureRecord:
    """A feature record from its JSON bytes, or :class:`FeatureRecordError` naming the field.

    Decoded by a typed decoder first; a record it does not take goes through the generic checks,
    so both accept and refuse alike, with the same reasons."""
    if value is None:
        raise FeatureRecordError("empty record")
    try:
        typed = _FEATURE_RECORD.decode(value)
    except _NOT_THE_SHAPE:  # the typed decoders' refusals (tasks.core.messages)
        return _parse_generic(value)
    strings = [typed.record_id, typed.product_id, typed.ts, typed.feature_set_version]
    if typed.schema_version != FEATURES_SCHEMA_VERSION or not all(strings):
        return _parse_generic(value)
    return _feature_record(*strings, typed.features)


def _parse_generic(value: bytes) -> FeatureRecord:
    try:
        record = decode_json(value)
    except MessageError as exc:
        raise FeatureRecordError(str(exc)) from None
    if not isinstance(record, dict):
        raise FeatureRecordError("not a JSON object")
    if record.get("schema_version") != FEATURES_SCHEMA_VERSION:
        raise FeatureRecordError(f"unsupported schema_version {record.get('schema_version')!r}")
    strings = []
    for name in _STRING_FIELDS:
        text = record.get(name)
        if not isinstance(text, str) or not text:
            raise FeatureRecordError(f"{name}: missing or not a string")
        strings.append(text)
    features = record.get("features")
    return _feature_record(*strings, features, check_values=True)


def _feature_record(
    record_id: str,
    product_id: str,
    ts: str,
    feature_set_version: str,
    features: Any,
    *,
    check_values: bool = False,
) -> FeatureRecord:
    """The checks both paths make; ``check_values``: the feature values' too (the typed
    decoder checked them already)."""
    if not is_product_id(product_id):  # the ticks' rule: the featurizer's too
        raise FeatureRecordError(product_id_error(product_id))
    try:
        event_ts = parse_ts(ts)
    except TimestampError as exc:
        raise FeatureRecordError(f"ts: {exc}") from None
    if not isinstance(features, dict):
        raise FeatureRecordError("features: missing or not an object")
    if check_values:
        for name, v in features.items():
            if v is not None and not _is_finite_number(v):
                raise FeatureRecordError(
                    f"features.{name[:60]}: {preview(v, 60)} is not a finite number or null"
                )
    return FeatureRecord(record_id, product_id, ts, event_ts, feature_set_version, features)


def _is_finite_number(value: object) -> bool:
    """A JSON number a float holds: not a bool, not infinite, not an integer of 400 digits."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _FLOAT_MAX


@dataclass(frozen=True, slots=True)
class ModelStamp:
    """Which model made a prediction."""

    name: str
    version: str
    variant: str
    threshold: float


def prediction_record(
    feature: FeatureRecord, score: float, model: ModelStamp, scored_at: str, latency_ms: float
) -> dict[str, Any]:
    """The ``ticks.predictions`` record of one scored feature record."""
    return {
        "schema_version": PREDICTIONS_SCHEMA_VERSION,
        "record_id": feature.record_id,
        "product_id": feature.product_id,
        "ts": feature.ts,
        "score": score,
        "spike": score >= model.threshold,
        "threshold": model.threshold,
        "model_name": model.name,
        "model_version": model.version,
        "model_variant": model.variant,
        "scored_at": scored_at,
        "latency_ms": round(latency_ms, 3),
    }


def bucket_counts(scores: np.ndarray, buckets: Sequence[float] = SCORE_BUCKETS) -> list[int]:
    """How many scores fall in each histogram bucket (``<= upper``, not cumulative), then the
    ones above the last bound: what many ``Histogram.observe`` calls would add, in one pass."""
    edges = np.asarray(buckets, dtype=float)
    index = np.searchsorted(edges, np.asarray(scores, dtype=float), side="left")
    return np.bincount(index, minlength=len(edges) + 1).tolist()
