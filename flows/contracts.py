"""Prefect task shared by the flows: admit data through its contract before anything uses it."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from data_contracts.gate import admit_table, check_and_admit
from tasks.recordings import expand_inputs
from tasks.settings import get_settings


def _is_recording(path: Path) -> bool:
    return path.name.endswith((".ndjson", ".ndjson.gz"))


@task(name="check-data-contracts")
def admit_data(paths: list[str]) -> list[str]:
    """The inputs that pass their contract: recordings the raw one, Parquet the features one.

    A failing batch is set aside in ``<data_dir>/quarantine`` with its report and never returned.
    """
    logger = get_run_logger()
    quarantine_dir = get_settings().data_dir / "quarantine"
    recordings = [
        p for p in paths if (Path(p).is_dir() and expand_inputs([p])) or _is_recording(Path(p))
    ]
    tables = [p for p in paths if p not in recordings]
    admitted: list[str] = []
    if recordings:
        admission = check_and_admit(recordings, quarantine_dir)
        admitted += [str(p) for p in admission.admitted]
        for item in admission.quarantined:
            logger.warning("set aside %s -> %s", item.path, item.location)
    for table in tables:
        result = admit_table("features", [table], quarantine_dir)
        if result.location is not None:
            logger.warning("set aside %s -> %s", table, result.location)
        else:
            admitted.append(table)
    if not admitted:
        raise RuntimeError(f"no input in {paths} passed its data contract")
    return admitted
