"""Prefect task shared by the flows: admit data through its contract before anything uses it."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from data_contracts.gate import admit_table, check_and_admit
from data_contracts.suites import options_for
from tasks.io.recordings import expand_inputs
from tasks.settings import get_settings


def _is_recording(path: Path) -> bool:
    return path.name.endswith((".ndjson", ".ndjson.gz"))


def admit_recordings(paths: list[str]) -> list[str]:
    """The recordings that pass the raw contract; failing ones are set aside with their report."""
    settings = get_settings()
    admission = check_and_admit(
        paths, settings.data_dir / "quarantine", options_for(settings.products)
    )
    for item in admission.quarantined:
        get_run_logger().warning("set aside %s -> %s", item.path, item.location)
    return [str(p) for p in admission.admitted]


@task(name="check-raw-contract")
def admit_recordings_task(paths: list[str]) -> list[str]:
    return admit_recordings(paths)


@task(name="check-data-contracts")
def admit_data(paths: list[str]) -> list[str]:
    """The inputs that pass their contract: recordings the raw one, Parquet the features one.

    A failing batch is set aside in ``<data_dir>/quarantine`` with its report and never returned.
    """
    settings = get_settings()
    recordings = [
        p for p in paths if (Path(p).is_dir() and expand_inputs([p])) or _is_recording(Path(p))
    ]
    tables = [p for p in paths if p not in recordings]
    admitted = admit_recordings(recordings) if recordings else []
    for table in tables:
        result = admit_table(
            "features", [table], settings.data_dir / "quarantine", options_for(settings.products)
        )
        if result.location is not None:
            get_run_logger().warning("set aside %s -> %s", table, result.location)
        else:
            admitted.append(table)
    if not admitted:
        raise RuntimeError(f"no input in {paths} passed its data contract")
    return admitted
