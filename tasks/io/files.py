"""Errors of writing files that say which path failed and why, in one line.

An ``OSError`` from deep inside pyarrow or gzip often names no path ("Error writing bytes to
file") or a temporary one; :func:`writing` turns it into a :class:`WriteError` naming the path
the user knows (the archive, the feature store, the report folder), with the system's reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteError(Exception):
    """A file or folder could not be written (disk full, read-only, a file in the way).

    Deliberately not an ``OSError``: code that takes an ``OSError`` for a network problem and
    retries it must not retry this.
    """


def reason(exc: OSError) -> str:
    """The system's words for an ``OSError`` ("No space left on device"), else its message."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


@contextmanager
def writing(path: Path, what: str = "", error: type[WriteError] = WriteError) -> Iterator[None]:
    """Raise ``error`` ("cannot write <what> at <path>: <reason>") for an ``OSError`` inside."""
    try:
        yield
    except OSError as exc:
        target = f"{what} at {path}" if what else str(path)
        raise error(f"cannot write {target}: {reason(exc)}") from exc


def describe(exc: OSError) -> str:
    """One line for an ``OSError`` met anywhere: the path it names and the system's reason."""
    if exc.filename is not None:
        return f"{exc.filename}: {reason(exc)}"
    return str(exc) or type(exc).__name__
