"""Feature engine throughput on one core: ticks per second through ``FeatureEngine.process``.

Two streams, both held in memory beforehand so only the engine is timed:

- ``real``: the real recordings in ../shared/data, if present (about 5 ticks/s of BTC-USD);
- ``busy``: a synthetic stream of two interleaved products at 100 ticks/s each, so the 300 s
  windows hold 30,000 ticks: throughput must not depend on how full the windows are.

Each figure is the best of ``--repeat`` runs, in CPU seconds of this process (the machine is
shared: wall-clock figures, also given, depend on what else runs). Target: at least 50,000
ticks/s, ten times the busiest whole-exchange ticker feed.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from tasks.core.features import FEATURE_SET_VERSION, FeatureEngine
from tasks.core.messages import MessageError, Tick, to_tick
from tasks.io.recordings import BadLine, expand_inputs, read_ticks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"
TARGET = 50_000


def real_ticks() -> list[Tick]:
    if not SHARED.is_dir():
        return []
    ticks = []
    for item in read_ticks(expand_inputs([SHARED])):
        if isinstance(item, BadLine):
            continue
        try:
            ticks.append(to_tick(item))
        except MessageError:
            continue
    ticks.sort(key=lambda t: t.ts)
    return ticks


def busy_ticks(n: int, rate: float = 100.0, seed: int = 1) -> list[Tick]:
    rng = random.Random(seed)
    ticks = []
    mids = {"BTC-USD": 90_000.0, "ETH-USD": 3_000.0}
    ts = 1_765_000_000.0
    for seq in range(n):
        product = "BTC-USD" if seq % 2 else "ETH-USD"
        ts += rng.expovariate(2 * rate)
        mid = mids[product] = mids[product] * math.exp(rng.gauss(0.0, 2e-5))
        half = 0.005 * rng.randint(1, 4)
        ticks.append(
            Tick(
                product,
                ts,
                "bench",
                seq,
                0,
                mid,
                mid - half,
                mid + half,
                rng.uniform(0, 2),
                rng.uniform(0, 2),
                1e4,
            )
        )
    return ticks


def throughput(ticks: list[Tick], repeat: int) -> dict[str, float]:
    """Best of ``repeat`` runs, in CPU time of this process (one core, whatever else runs)."""
    best_cpu = best_wall = math.inf
    for _ in range(repeat):
        engine = FeatureEngine()
        process = engine.process
        wall, cpu = time.perf_counter(), time.process_time()
        for tick in ticks:
            process(tick)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return {
        "ticks": len(ticks),
        "cpu_s": round(best_cpu, 3),
        "ticks_per_s": round(len(ticks) / best_cpu),
        "us_per_tick": round(1e6 * best_cpu / len(ticks), 2),
        "wall_ticks_per_s": round(len(ticks) / best_wall),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--busy-ticks", type=int, default=200_000)
    args = parser.parse_args()
    figures: dict[str, object] = {"feature_set_version": FEATURE_SET_VERSION, "target": TARGET}
    real = real_ticks()
    if real:
        figures["real"] = throughput(real, args.repeat)
    figures["busy"] = throughput(busy_ticks(args.busy_ticks), args.repeat)
    worst = min(f["ticks_per_s"] for k, f in figures.items() if k in ("real", "busy"))
    figures["meets_target"] = worst >= TARGET
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
