"""Run a suite on a frame with Great Expectations and summarise it per expectation.

One ephemeral context (in memory: nothing is written to the tree, no analytics, no progress bars)
serves the whole process; it is created on first use because importing Great Expectations takes
seconds. :class:`ValidationReport` is plain data: it prints as a table and saves as JSON.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.frames import RawBatch, with_split_gaps, with_time_steps
from data_contracts.suites import ContractOptions, build_suite

SAMPLE_SIZE = 5
BAD_LINES_CHECK = "bad_line_fraction_at_most"


@dataclass
class Outcome:
    """One expectation's result, flattened."""

    expectation: str
    column: str | None
    success: bool
    description: str = ""
    unexpected_count: int | None = None
    element_count: int | None = None
    observed: Any = None
    sample: list[Any] = field(default_factory=list)
    error: str | None = None

    def amount(self) -> str:
        if self.error:
            return "error"
        if self.unexpected_count is not None:
            return f"{self.unexpected_count}/{self.element_count}"
        return "" if self.observed is None else f"observed {_short(self.observed, 30)}"


@dataclass
class ValidationReport:
    kind: str
    suite: str
    success: bool
    rows: int
    outcomes: list[Outcome]
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    def failed_columns(self) -> set[str]:
        return {o.column or "" for o in self.failures}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = len(self.failures)
        return _jsonable(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """The per-expectation summary printed by ``cryptovol validate-data``."""
        header = ("", "expectation", "column", "rule", "unexpected", "sample")
        rows = [
            (
                "PASS" if o.success else "FAIL",
                o.expectation.removeprefix("expect_"),
                o.column or "(table)",
                o.description,
                o.amount(),
                o.error or ("" if o.success else ", ".join(_short(s) for s in o.sample[:3])),
            )
            for o in self.outcomes
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
            for r in [header, *rows]
        ]
        verdict = "PASSED" if self.success else f"FAILED ({len(self.failures)} expectations)"
        lines.append(f"{self.suite}: {self.rows} rows, {len(self.outcomes)} checks, {verdict}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(line.rstrip() for line in lines)


@lru_cache(maxsize=1)
def _batch_definition() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("cryptovol").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole")


def prepare(kind: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the helper columns its suite checks (raw frames already carry theirs)."""
    if kind in ("raw", "predictions"):
        return frame
    out = with_time_steps(frame)
    ts_dtype = out["ts"].dtype if "ts" in out.columns else None
    if isinstance(ts_dtype, pd.DatetimeTZDtype) and str(ts_dtype.tz) == "UTC":
        out["ts"] = out["ts"].astype("datetime64[ns, UTC]")  # the unit is no contract: any passes
    if kind == "training":
        out = with_split_gaps(out)
    return out


def validate_frame(
    kind: str,
    frame: pd.DataFrame,
    options: ContractOptions | None = None,
    *,
    sources: list[str] | None = None,
) -> ValidationReport:
    """Check ``frame`` against the ``raw``, ``features`` or ``training`` suite."""
    ge_log = logging.getLogger("great_expectations")
    if ge_log.level == logging.NOTSET:  # its INFO chatter (thousands of lines) is no news
        ge_log.setLevel(logging.WARNING)
    import great_expectations as gx

    options = options or ContractOptions()
    prepared = prepare(kind, frame)
    spec = build_suite(kind, options, prepared)
    for position, expectation in enumerate(spec.expectations):
        expectation.meta = {**(expectation.meta or {}), "position": position}
    suite = gx.ExpectationSuite(name=spec.name, expectations=spec.expectations)
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_SIZE,
    }
    if "record_id" in prepared.columns:
        result_format["unexpected_index_column_names"] = ["record_id"]
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": prepared})
    result = batch.validate(suite, result_format=result_format)
    ordered = sorted(result.results, key=lambda r: r.expectation_config.meta["position"])
    outcomes = [_outcome(r) for r in ordered]
    return ValidationReport(
        kind=kind,
        suite=spec.name,
        success=all(o.success for o in outcomes),
        rows=len(frame),
        outcomes=outcomes,
        notes=spec.notes,
        sources=list(sources or []),
        options=options.as_dict(),
    )


def validate_raw_batch(batch: RawBatch, options: ContractOptions | None = None) -> ValidationReport:
    """The raw suite on the batch's ticks, plus the counted rejection of lines that gave none."""
    options = options or ContractOptions()
    report = validate_frame("raw", batch.frame, options, sources=batch.sources)
    limit = options.max_bad_line_fraction
    bad = len(batch.bad_lines)
    ok = bad <= limit * batch.lines
    report.outcomes.append(
        Outcome(
            expectation=BAD_LINES_CHECK,
            column="(line)",
            success=ok,
            description=f"unreadable lines <= {limit:.1%} (the rest are dropped and counted)",
            unexpected_count=bad,
            element_count=batch.lines,
            sample=[b.describe() for b in batch.bad_lines[:SAMPLE_SIZE]],
        )
    )
    if batch.truncated:
        report.notes.append(
            f"{len(batch.truncated)} file(s) end cut off (a writer stopped mid-write); the cut "
            "tail is dropped, not counted as a bad line: "
            + "; ".join(b.describe() for b in batch.truncated[:SAMPLE_SIZE])
        )
    report.success = report.success and ok
    return report


def _outcome(result: Any) -> Outcome:
    config = result.expectation_config
    kwargs = config.kwargs
    if "column" in kwargs:
        column = kwargs["column"]
    elif "column_A" in kwargs:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    elif "column_list" in kwargs:
        column = ",".join(kwargs["column_list"])
    else:
        column = None
    details = result.result or {}
    samples = details.get("partial_unexpected_index_list") or []
    if samples and isinstance(samples[0], dict) and "record_id" in samples[0]:
        sample = [_record_sample(s) for s in samples]
    else:
        sample = list(details.get("partial_unexpected_list") or [])
    return Outcome(
        expectation=config.type,
        column=column,
        success=bool(result.success),
        description=config.description or "",
        unexpected_count=details.get("unexpected_count"),
        element_count=details.get("element_count"),
        observed=_jsonable(details.get("observed_value")),
        sample=_jsonable(sample[:SAMPLE_SIZE]),
        error=_exception_message(result.exception_info),
    )


def _record_sample(entry: dict[str, Any]) -> str:
    values = {k: v for k, v in entry.items() if k != "record_id"}
    shown = ", ".join(_short(_jsonable(v)) for v in values.values())
    return f"{entry['record_id']}: {shown}"


def _exception_message(info: Any) -> str | None:
    """The first exception message of a result (flat, or keyed by metric id)."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for nested in info.values():
        message = _exception_message(nested)
        if message:
            return message
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat() if not pd.isna(value) else None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
