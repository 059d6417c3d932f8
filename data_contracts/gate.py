"""The gate the flows call: a batch that breaks its contract is set aside and never admitted.

A set-aside batch lands in ``<quarantine_dir>/<UTC stamp>-<kind>-<name>/`` with its
``report.json`` (the per-expectation summary). Recordings are judged one file at a time, so one
bad file does not hold back the others; a feature or training table is judged whole. Files with
nothing to judge are skipped, neither admitted nor set aside: the raw archive's control folder
(heartbeats, subscriptions, messages the capture could not parse) and files without a single
ticker or bad line.
By default batches are copied (the caller's files stay where they are); ``move=True`` takes them
out of the input directory so the next run does not see them again.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from data_contracts.frames import read_raw_batch, read_table
from data_contracts.suites import ContractOptions
from data_contracts.validate import ValidationReport, validate_frame, validate_raw_batch
from tasks.io.archive import CONTROL_KEY
from tasks.io.recordings import expand_inputs

log = logging.getLogger("cryptovol.contracts")


@dataclass
class Quarantined:
    path: Path  # the batch as it was given
    report: ValidationReport
    location: Path  # the quarantine folder: the batch and report.json


@dataclass
class Admission:
    """Recordings that passed the raw contract, and those set aside."""

    admitted: list[Path] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # no ticks to judge
    reports: dict[str, ValidationReport] = field(default_factory=dict)


@dataclass
class TableAdmission:
    """A feature or training table: the frame if it passed, else where it was set aside."""

    report: ValidationReport
    frame: pd.DataFrame | None = None
    location: Path | None = None


def quarantine(
    paths: str | Path | Iterable[str | Path],
    report: ValidationReport,
    quarantine_dir: str | Path,
    *,
    move: bool = False,
) -> Path:
    """Copy (or move) a failing batch into a fresh quarantine folder beside its report."""
    items = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = Path(quarantine_dir) / f"{stamp}-{report.kind}-{items[0].name}"
    target.mkdir(parents=True)
    for item in items:
        dest = target / item.name
        if move:
            shutil.move(item, dest)
        elif item.is_dir():
            shutil.copytree(item, dest)
        else:
            shutil.copy2(item, dest)
    (target / "report.json").write_text(report.to_json())
    return target


def check_and_admit(
    paths: Iterable[str | Path],
    quarantine_dir: str | Path,
    options: ContractOptions | None = None,
    *,
    move: bool = False,
) -> Admission:
    """Judge every recording file on the raw contract; return the ones fit for training."""
    admission = Admission()
    for path in expand_inputs(paths):
        if path.parent.name == CONTROL_KEY:
            admission.skipped.append(path)
            continue
        batch = read_raw_batch([path])
        if batch.lines == 0:
            admission.skipped.append(path)
            continue
        report = validate_raw_batch(batch, options)
        admission.reports[str(path)] = report
        if report.success:
            admission.admitted.append(path)
            continue
        location = quarantine(path, report, quarantine_dir, move=move)
        admission.quarantined.append(Quarantined(path, report, location))
        failed = ", ".join(f"{o.expectation}({o.column})" for o in report.failures)
        log.warning("recording %s set aside in %s: %s", path, location, failed)
    return admission


def admit_table(
    kind: str,
    paths: Iterable[str | Path],
    quarantine_dir: str | Path,
    options: ContractOptions | None = None,
    *,
    move: bool = False,
) -> TableAdmission:
    """Judge Parquet features or a training set on its contract; set it aside if it fails."""
    items = [Path(p) for p in paths]
    frame = read_table(items)
    report = validate_frame(kind, frame, options, sources=[str(p) for p in items])
    if report.success:
        return TableAdmission(report, frame=frame)
    location = quarantine(items, report, quarantine_dir, move=move)
    log.warning("%s table %s set aside in %s", kind, ", ".join(map(str, items)), location)
    return TableAdmission(report, location=location)
