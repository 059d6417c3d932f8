"""The expectation suites, defined in code: raw ticks, features, training sets, predictions
(the last in :mod:`data_contracts.predictions`).

Nothing here touches disk. Great Expectations is imported inside :func:`build_suite` only, since
importing it takes seconds. Each expectation carries a short ``description`` (the rule in plain
words) that the summary table prints.

Feature ranges come from :data:`FEATURE_RULES`, matched on the feature name (first match wins),
so a new feature of a known family (``realized_vol_900``) gets its family's rule. A name no rule
matches is still checked for infinities, and the report lists it as unchecked.
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from data_contracts.frames import RAW_COLUMNS, RAW_NUMERIC_FIELDS, SPLIT_ORDER, splits_are_folds
from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from tasks.core.messages import (
    MAX_LAG_S,
    MAX_LEAD_S,
    MAX_PRICE,
    MAX_SEQUENCE_NUM,
    MAX_SIZE,
    MIN_PRICE,
)

KINDS = ("raw", "features", "training", "predictions")
DEFAULT_PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")
FLOAT_MAX = sys.float_info.max  # "between -FLOAT_MAX and FLOAT_MAX" is "finite" for non-null values


@dataclass(frozen=True)
class ContractOptions:
    """The knobs of the contracts; the defaults suit the project's own data."""

    products: tuple[str, ...] = DEFAULT_PRODUCTS
    max_future_s: float = 120.0  # clock skew tolerated before a timestamp is "in the future"
    now: datetime | None = None  # None: the time of validation
    max_bad_line_fraction: float = 0.01  # lines of a recording that give no tick (counted)
    label_rate: tuple[float, float] = (0.01, 0.5)
    embargo_s: float = 360.0  # longest window (300 s) plus the label horizon (60 s)
    feature_names: tuple[str, ...] = FEATURE_NAMES
    feature_set_version: str = FEATURE_SET_VERSION
    key_columns: tuple[str, ...] = ("product_id", "ts")

    def future_limit(self) -> datetime:
        return (self.now or datetime.now(UTC)) + timedelta(seconds=self.max_future_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "products": list(self.products),
            "max_future_s": self.max_future_s,
            "future_limit": self.future_limit().isoformat(),
            "max_bad_line_fraction": self.max_bad_line_fraction,
            "label_rate": list(self.label_rate),
            "embargo_s": self.embargo_s,
            "feature_set_version": self.feature_set_version,
            "key_columns": list(self.key_columns),
        }


def options_for(configured_products: tuple[str, ...] = (), **overrides) -> ContractOptions:
    """Contract options that also know the products the deployment is configured for."""
    products = tuple(sorted({*DEFAULT_PRODUCTS, *configured_products}))
    return ContractOptions(products=products, **overrides)


@dataclass(frozen=True)
class FeatureRule:
    """Bounds (None: unbounded on that side) and the share of rows allowed to be NaN."""

    min_value: float | None = None
    max_value: float | None = None
    max_null_fraction: float = 0.0  # 1.0: an optional input, NaN anywhere (never zero instead)

    @property
    def has_range(self) -> bool:
        return self.min_value is not None or self.max_value is not None

    def describe(self) -> str:
        low = "-inf" if self.min_value is None else f"{self.min_value:g}"
        high = "inf" if self.max_value is None else f"{self.max_value:g}"
        return f"finite, in [{low}, {high}]" if self.has_range else "finite (range unchecked)"


# Return-based features are NaN on the first tick(s) of every segment (after a gap): a few percent.
_SEGMENT_START_NULLS = 0.05
FEATURE_RULES: tuple[tuple[str, FeatureRule], ...] = (
    ("realized_vol_*", FeatureRule(0.0, None, _SEGMENT_START_NULLS)),
    ("ret_std", FeatureRule(0.0, None, _SEGMENT_START_NULLS)),
    ("vol_ratio_*", FeatureRule(0.0, None, 0.10)),
    ("range_bps_*", FeatureRule(0.0, None, 0.0)),
    ("spread_bps*", FeatureRule(0.0, None, 1.0)),  # NaN without a book
    ("imbalance*", FeatureRule(-1.0, 1.0, 1.0)),  # NaN without quantities
    ("tick_intensity_ratio_*", FeatureRule(0.0, None, 1.0)),  # NaN early in a segment
    ("tick_intensity_*", FeatureRule(0.0, None, 0.0)),
    ("n", FeatureRule(0.0, None, 0.0)),
    ("fwd_vol_*", FeatureRule(0.0, None, 1.0)),  # NaN near gaps and at the end
    ("trail_vol_*", FeatureRule(0.0, None, 1.0)),
    # Signed quantities: explicitly unchecked ranges, but finite and mostly present.
    ("log_return_*", FeatureRule(None, None, _SEGMENT_START_NULLS)),
    ("price_velocity_*", FeatureRule(None, None, _SEGMENT_START_NULLS)),
    ("ret_mean", FeatureRule(None, None, _SEGMENT_START_NULLS)),
)
UNMATCHED_RULE = FeatureRule(None, None, 1.0)
LABEL_INPUT_COLUMNS = ("fwd_vol_60", "trail_vol_900")


def rule_for(name: str) -> FeatureRule | None:
    """The rule of the first pattern matching ``name``, or None."""
    for pattern, rule in FEATURE_RULES:
        if fnmatch.fnmatchcase(name, pattern):
            return rule
    return None


@dataclass
class SuiteSpec:
    name: str
    expectations: list[Any]
    notes: list[str] = field(default_factory=list)


def build_suite(kind: str, options: ContractOptions, frame: pd.DataFrame) -> SuiteSpec:
    """The expectations for ``kind``; the frame to check decides the optional ones (label inputs
    present, named splits or fold ids)."""
    if kind not in KINDS:
        raise ValueError(f"unknown contract kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "raw":
        return SuiteSpec("raw_ticks", _raw_expectations(options))
    if kind == "predictions":
        from data_contracts.predictions import prediction_expectations

        return SuiteSpec("predictions", prediction_expectations(options.products))
    expectations, notes = _feature_expectations(options, set(frame.columns))
    if kind == "features":
        return SuiteSpec("features", expectations, notes)
    folds = "split" in frame.columns and splits_are_folds(frame["split"])
    return SuiteSpec("training_set", expectations + _training_expectations(options, folds), notes)


def _raw_expectations(options: ContractOptions) -> list[Any]:
    import great_expectations.expectations as gxe

    limit = options.future_limit()
    out: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="at least one tick"),
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(RAW_COLUMNS), exact_match=False, description="raw columns present"
        ),
        gxe.ExpectColumnTypeToBe(
            column="timestamp", type_="datetime64[ns, UTC]", description="tz-aware UTC"
        ),
        gxe.ExpectColumnTypeToBe(column="sequence_num", type_="int64", description="integer"),
    ]
    out += [
        gxe.ExpectColumnTypeToBe(column=name, type_="float64", description="number")
        for name in RAW_NUMERIC_FIELDS
    ]
    out += [
        gxe.ExpectColumnValuesToBeOfType(column=name, type_="str", description="string")
        for name in ("product_id", "source")
    ]
    out += [
        gxe.ExpectColumnValuesToNotBeNull(column=name, description="required")
        for name in ("record_id", "product_id", "source", "timestamp", "price")
    ]
    out += [
        gxe.ExpectColumnValuesToBeNull(
            column="unparseable", description="every number and timestamp parses"
        ),
        gxe.ExpectColumnValuesToBeNull(
            column="refused", description="the parse step (to_tick) takes the tick"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="product_id", value_set=list(options.products), description="known product"
        ),
    ]
    out += [
        gxe.ExpectColumnValuesToBeBetween(
            column=name,
            min_value=MIN_PRICE,
            max_value=MAX_PRICE,
            description=f"in [{MIN_PRICE:g}, {MAX_PRICE:g}]",
        )
        for name in ("price", "best_bid", "best_ask")
    ]
    out += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="best_ask",
            column_B="best_bid",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            description="best_bid <= best_ask (book not crossed)",
        ),
    ]
    out += [
        gxe.ExpectColumnValuesToBeBetween(
            column=name,
            min_value=0,
            max_value=MAX_SIZE,
            description=f"in [0, {MAX_SIZE:g}] (NaN if absent)",
        )
        for name in ("best_bid_quantity", "best_ask_quantity", "volume_24_h")
    ]
    out += [
        gxe.ExpectColumnValuesToBeBetween(
            column="timestamp",
            max_value=limit.isoformat(),
            description=f"not in the future (<= now + {options.max_future_s:g} s)",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="receive_lead_s",
            min_value=-MAX_LAG_S,
            max_value=MAX_LEAD_S,
            description=(
                f"timestamp within {MAX_LAG_S:g} s before to {MAX_LEAD_S:g} s after receive time"
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="sequence_num",
            min_value=0,
            max_value=MAX_SEQUENCE_NUM,
            description="present (>= 0, < 2^53)",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="seq_delta",
            min_value=0,
            strict_min=True,
            description="sequence strictly increasing within a source",
        ),
        gxe.ExpectColumnValuesToBeUnique(column="record_id", description="no duplicate tick"),
    ]
    return out


def _feature_expectations(
    options: ContractOptions, present: set[str]
) -> tuple[list[Any], list[str]]:
    import great_expectations.expectations as gxe

    names = list(options.feature_names)
    required = ["product_id", "ts", "feature_set_version", *names]
    out: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="at least one row"),
        gxe.ExpectTableColumnsToMatchSet(
            column_set=required, exact_match=False, description="feature columns present"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="feature_set_version",
            value_set=[options.feature_set_version],
            description=f"feature set {options.feature_set_version}",
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="product_id", description="required"),
        gxe.ExpectColumnValuesToNotBeNull(column="ts", description="required"),
        gxe.ExpectColumnTypeToBe(column="ts", type_="datetime64[ns, UTC]", description="UTC"),
        gxe.ExpectColumnValuesToBeBetween(
            column="ts_step_s", min_value=0, description="time never goes back within a product"
        ),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=list(options.key_columns), description="no duplicate key"
        ),
    ]
    notes: list[str] = []
    checked = names + [c for c in LABEL_INPUT_COLUMNS if c in present]
    for name in checked:
        rule = rule_for(name)
        if rule is None:
            rule = UNMATCHED_RULE
            notes.append(f"{name}: no rule matches; checked for infinities only")
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=name,
                min_value=-FLOAT_MAX if rule.min_value is None else rule.min_value,
                max_value=FLOAT_MAX if rule.max_value is None else rule.max_value,
                description=rule.describe(),
            )
        )
        if rule.max_null_fraction < 1.0:
            mostly = 1.0 - rule.max_null_fraction
            out.append(
                gxe.ExpectColumnValuesToNotBeNull(
                    column=name,
                    mostly=mostly,
                    description=f"NaN in at most {rule.max_null_fraction:.0%} of rows",
                )
            )
    return out, notes


def _training_expectations(options: ContractOptions, folds: bool) -> list[Any]:
    import great_expectations.expectations as gxe

    low, high = options.label_rate
    out: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=["label", "split"], exact_match=False, description="label and split present"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="label", value_set=[0, 1], description="0 or 1 where present"
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column="label",
            min_value=low,
            max_value=high,
            description=f"label rate in [{low:g}, {high:g}]",
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="split", description="required"),
    ]
    if folds:
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="split_gap_s",
                min_value=0,
                strict_min=True,
                description="folds do not overlap in time per product",
            )
        )
    else:
        out += [
            gxe.ExpectColumnValuesToBeInSet(
                column="split", value_set=list(SPLIT_ORDER), description="named split"
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="split_gap_s",
                min_value=options.embargo_s,
                strict_min=True,
                description=f"later splits start > {options.embargo_s:g} s after earlier ones",
            ),
        ]
    return out
