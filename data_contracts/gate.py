"""The gate every entry point passes: a batch that breaks its contract is set aside, never admitted.

The stages call :func:`admit_inputs` (train) and :func:`admit_recordings` (backfill), so the
CLI, the Prefect flows and the quickstart admit data the same way.

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
from data_contracts.suites import ContractOptions, options_for
from data_contracts.validate import ValidationReport, validate_frame, validate_raw_batch
from tasks.io.archive import CONTROL_KEY
from tasks.io.recordings import expand_inputs, is_recording
from tasks.settings import Settings

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


class NothingAdmitted(ValueError):
    """No input passed its data contract (each failing one is in the quarantine folder)."""


def admit_recordings(settings: Settings, paths: Iterable[str | Path]) -> list[str]:
    """The recordings that pass the raw contract; failing ones are set aside with their report."""
    admission = check_and_admit(paths, settings.quarantine_dir, options_for(settings.products))
    return [str(p) for p in admission.admitted]


def admit_inputs(settings: Settings, paths: Iterable[str | Path]) -> list[str]:
    """The inputs that pass their contract: recordings the raw one, Parquet the features one.

    A failing batch is set aside in the quarantine folder with its report and never returned;
    raises :class:`NothingAdmitted` when nothing passes.
    """
    paths = [str(p) for p in paths]
    recordings = [
        p for p in paths if is_recording(Path(p)) or (Path(p).is_dir() and expand_inputs([p]))
    ]
    tables = [p for p in paths if p not in recordings]
    admitted = admit_recordings(settings, recordings) if recordings else []
    options = options_for(settings.products)
    for table in tables:
        result = admit_table("features", [table], settings.quarantine_dir, options)
        if result.location is None:
            admitted.append(table)
    if not admitted:
        raise NothingAdmitted(
            f"no input in {paths} passed its data contract; reports in {settings.quarantine_dir}"
        )
    return admitted
