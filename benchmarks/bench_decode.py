"""JSON decoding of real recordings: the standard library, orjson and msgspec side by side.

Decodes every line of the real recordings in ../shared/data (both folders; a synthetic recording
when they are absent, and says so) with each decoder, and once more through the project's own
parse step (:func:`tasks.core.messages.parse_envelope` and :func:`to_tick`) for scale. msgspec is
measured twice: into plain dicts (what the parse step checks today) and into typed structs with
the ticker's schema (a malformed line fails in the decoder, naming the field), and once more as
the backfill decodes them (:func:`tasks.core.messages.decode_recorded_lines`: typed structs of the
fields a tick needs, the garbage collector paused, the shape's rules checked). Best of
``--repeat`` runs; prints one JSON object of lines per second.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import tempfile
import time
from pathlib import Path

import msgspec
import orjson  # measured, not kept: it comes with prefect

from tasks.core.messages import (
    MessageError,
    RecordedLine,
    decode_recorded_lines,
    parse_envelope,
    ticks_from_envelope,
    to_tick,
)
from tasks.io.recordings import expand_inputs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def recording_lines() -> tuple[list[bytes], str]:
    paths = expand_inputs([SHARED]) if SHARED.is_dir() else []
    if paths:
        lines = []
        for path in paths:
            with gzip.open(path, "rb") as fh:
                lines.extend(line for line in fh if line.strip())
        return lines, f"{len(paths)} real recordings in {SHARED}"
    with tempfile.TemporaryDirectory() as tmp:
        from tasks.sim.writer import write_recordings

        summary = write_recordings(tmp, minutes=60)
        lines = []
        for path in summary.files:
            with gzip.open(path, "rb") as fh:
                lines.extend(line for line in fh if line.strip())
    return lines, "a simulated hour of two products (no ../shared/data)"


def best_rate(decode, lines: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for line in lines:
            decode(line)
        best = min(best, time.perf_counter() - began)
    return round(len(lines) / best)


def best_batch_rate(decode_all, lines: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        decode_all(lines)
        best = min(best, time.perf_counter() - began)
    return round(len(lines) / best)


def parse_step(line: bytes) -> None:
    envelope = parse_envelope(line)
    for raw in ticks_from_envelope(envelope, received_at=envelope.timestamp, source="bench"):
        with contextlib.suppress(MessageError):  # refused ticks cost their check too
            to_tick(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lines, data = recording_lines()
    typed = msgspec.json.Decoder(RecordedLine)
    untyped = msgspec.json.Decoder()
    assert all(orjson.loads(x) == json.loads(x) == untyped.decode(x) for x in lines[:1000])
    rates = {
        "json_loads": best_rate(json.loads, lines, args.repeat),
        "orjson_loads": best_rate(orjson.loads, lines, args.repeat),
        "msgspec_dicts": best_rate(untyped.decode, lines, args.repeat),
        "msgspec_typed": best_rate(typed.decode, lines, args.repeat),
        "backfill_typed_lines": best_batch_rate(decode_recorded_lines, lines, args.repeat),
        "parse_step_now": best_rate(parse_step, lines, max(1, args.repeat // 2)),
    }
    print(
        json.dumps(
            {
                "data": data,
                "lines": len(lines),
                "lines_per_s": rates,
                "speedup_vs_json": {k: round(v / rates["json_loads"], 2) for k, v in rates.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
