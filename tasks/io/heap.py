"""The C heap of a process that builds and frees large arrays in turn (training), handed back to
the system where the allocator is glibc's; elsewhere these calls change nothing."""

from __future__ import annotations

import contextlib
import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError):
        return ctypes.CDLL("libc.so.6")
    return None


def map_large_blocks(threshold: int = 1 << 20) -> None:
    """Have glibc map every block of ``threshold`` bytes or more on its own, so a freed array goes
    back to the system. By default its threshold rises to 32 MiB after the first large free, and
    training's columns and designs of many sizes, freed in turn, then fragment its heap: the peak
    grows with what was freed, not with what is held (docs/features.md gives the figures)."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, threshold)


def trim() -> None:
    """Give the heap's free pages back to the system (``malloc_trim``)."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
