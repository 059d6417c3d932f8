"""The garbage collector's setting for a process that runs until stopped: the BentoML service,
``cryptovol featurize`` and ``cryptovol score``."""

from __future__ import annotations

import gc

GC_THRESHOLDS = (20_000, 20, 20)  # Python's default: (700, 10, 10)


def tune_gc_for_a_long_running_process() -> None:
    """Once the process is set up (modules imported, the model loaded): what is alive now lives
    as long as the process, so full collections skip it (``gc.freeze``), and the young
    generations are collected less often (a record or a request allocates a few dozen to a few
    hundred objects, nearly all gone with it). About 15 % of the featurizer's CPU per tick. Not
    for a process that runs many loops (tests): frozen objects are never collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
