"""Many products over many days: simulate a market, backfill it on 1 and 2 Dask workers, train.

1. ``cryptovol simulate --days D --products P`` into a temporary folder (or ``--data DIR``, a
   market simulated before), timed;
2. the backfill by (product, day) partition (:mod:`tasks.stages.backfill_partitions`) on a local
   Dask cluster of each ``--workers`` count, into a partitioned store: wall time, ticks/s, the
   speed-up over the first count (after one file backfilled untimed, so that the first count
   does not pay the imports alone), the time of each phase, and the peak memory of the whole
   process tree (this process, the scheduler and the workers; sampled every 0.2 s). Every
   run's store must hold the same rows (checked partition by partition). On a shared machine
   wall time says little, so the CPU time of each partition is reported too, and from it the
   time idle cores would take (``makespan_bound_s``) and the speed-up that allows
   (``cpu_speedup_bound``);
3. ``train`` on the store with its row budgets (``--max-rows-per-product``, ``--max-rows``:
   default the settings'), in a fresh process against a temporary MLflow store, contracts
   skipped: wall and CPU time, rows used, peak memory, and the wall time and peak of each part
   (load, training, MLflow). ``--store DIR`` does only this, on a store backfilled before.

Defaults are the issue's week of 20 products (33.3 million ticks: most of an hour on this
machine); ``--products 4 --days 2`` gives the figures in minutes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.dataset as ds

from tasks.commands.simulate import MARKET
from tasks.io.dask_cluster import dask_client, run_on
from tasks.settings import Settings
from tasks.sim.writer import write_market
from tasks.stages.backfill_partitions import PartitionResult, backfill_partitioned


class PeakMemory:
    """Peak resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


def makespan(cpu_s: list[float], workers: int) -> float:
    """The time ``workers`` idle cores would take for partitions of these CPU times, each given
    to the least loaded worker, longest first (how the scheduler roughly hands them out)."""
    loads = [0.0] * workers
    for seconds in sorted(cpu_s, reverse=True):
        loads[loads.index(min(loads))] += seconds
    return max(loads)


def store_digest(store: Path) -> dict[str, str]:
    """A hash of each partition's rows, to compare two stores without holding either."""
    dataset = ds.dataset(store, format="parquet", partitioning="hive")
    digest = {}
    for fragment in dataset.get_fragments():
        table = fragment.to_table().sort_by("ts")
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        key = str(Path(fragment.path).relative_to(store).parent)
        digest[key] = hashlib.sha256(sink.getvalue()).hexdigest()
    return digest


TRAIN = """
import json, sys, threading, time
import psutil
import tasks.core.training, tasks.stages.data, tasks.stages.train
from tasks.settings import Settings

samples, marks, done = [], [], threading.Event()

def sample():
    me = psutil.Process()
    while not done.is_set():
        samples.append((time.perf_counter(), me.memory_info().rss))
        done.wait(0.1)

def timed(module, name, part):
    fn = getattr(module, name)
    def wrapped(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            marks.append((part, began, time.perf_counter()))
    setattr(module, name, wrapped)

timed(tasks.stages.data, "load_frame", "load")
timed(tasks.core.training, "train", "train")
timed(tasks.stages.train, "log_training", "mlflow")
threading.Thread(target=sample, daemon=True).start()
settings = Settings(data_dir=sys.argv[1], mlflow_tracking_uri="")
began = time.perf_counter()
out = tasks.stages.train.train_and_register(
    settings, [sys.argv[2]], alias=None, check_contracts=False,
    max_rows_per_product=int(sys.argv[3]), max_rows=int(sys.argv[4]))
done.set()
parts = {part: {"wall_s": round(end - start, 1),
                "peak_rss_mib": round(max([r for t, r in samples if start <= t <= end] or [0])
                                      / 2**20, 1)}
         for part, start, end in marks}
print(json.dumps({"wall_s": round(time.perf_counter() - began, 1), "data": out["data"],
                  "parts": parts,
                  "timings": {k: round(v, 1) for k, v in out["timings"].items()
                              if isinstance(v, float)},
                  "selected": out["selected"], "test_pr_auc": out["metrics"]["pr_auc"]}))
"""


def train(store: Path, work: Path, budget: int, total: int) -> dict:
    """Training in a fresh process: wall time and peak memory of the whole and of each part
    (the load, the training, the MLflow logging; resident memory sampled every 0.1 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(work), str(store), str(budget), str(total)],
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("training failed")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    figures["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--data", help="a market simulated before (cryptovol simulate --days)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--max-rows-per-product",
        type=int,
        default=Settings.model_fields["train_max_rows_per_product"].default,
        help="the training's row budget (default: the setting's default, %(default)s)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=Settings.model_fields["train_max_rows"].default,
        help="the training's total row budget (default: the setting's default, %(default)s)",
    )
    parser.add_argument(
        "--store", help="only train, on this store backfilled before (cryptovol backfill --out)"
    )
    parser.add_argument("--no-train", action="store_true", help="only simulate and backfill")
    args = parser.parse_args()
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        if args.store:
            figures["store"] = args.store
            figures["train"] = train(
                Path(args.store), work / "train", args.max_rows_per_product, args.max_rows
            )
            print(json.dumps(figures, indent=2))
            return 0
        if args.data:
            market = Path(args.data)
            figures["data"] = str(market)
        else:
            market = work / "market"
            began = time.perf_counter()
            summary = write_market(
                market, MARKET[: args.products], days=args.days, workers=max(args.workers)
            )
            figures["simulate"] = {
                "products": args.products,
                "days": args.days,
                "ticks": summary.messages,
                "files": len(summary.files),
                "wall_s": round(time.perf_counter() - began, 1),
            }
        runs, digests = {}, {}
        # one file untimed, in this process: the first timed run must not pay the imports
        # (pyarrow's writers...) that every later one finds loaded
        backfill_partitioned([min(market.rglob("*.ndjson.gz"))], work / "warm-up")
        for workers in args.workers:
            store = work / f"features-{workers}"
            partitions: list[PartitionResult] = []
            phases: dict[str, float] = {}
            with PeakMemory() as memory, dask_client(workers=workers) as client:

                def run_all(fn, items, client=client, partitions=partitions, phases=phases):
                    began = time.perf_counter()
                    results = run_on(client)(fn, items)
                    name = getattr(fn, "func", fn).__name__
                    phases[name] = phases.get(name, 0.0) + time.perf_counter() - began
                    partitions.extend(r for r in results if isinstance(r, PartitionResult))
                    return results

                began = time.perf_counter()
                stats = backfill_partitioned([market], store, run_all=run_all)
                wall = time.perf_counter() - began
            digests[workers] = store_digest(store)
            cpu = [r.cpu_s for r in partitions]
            runs[workers] = {
                "ticks": stats.ticks,
                "rows": stats.rows,
                "partitions": len(partitions),
                "wall_s": round(wall, 1),
                "ticks_per_s": round(stats.ticks / wall),
                "ticks_per_s_per_worker": round(stats.ticks / wall / workers),
                "partition_cpu_s": round(sum(cpu), 1),
                "ticks_per_partition_cpu_s": round(stats.ticks / sum(cpu)),
                "makespan_bound_s": round(makespan(cpu, workers), 1),
                "peak_rss_mib": memory.mib,
                "phases_s": {
                    **{name: round(seconds, 1) for name, seconds in phases.items()},
                    "rest": round(wall - sum(phases.values()), 1),
                },
            }
        first = args.workers[0]
        for workers, run in runs.items():
            run["speedup"] = round(runs[first]["wall_s"] / run["wall_s"], 2)
            run["cpu_speedup_bound"] = round(
                runs[first]["partition_cpu_s"] / run["makespan_bound_s"], 2
            )
            run["same_rows_as_first"] = digests[workers] == digests[first]
        figures["backfill"] = runs
        if not args.no_train:
            figures["train"] = train(
                work / f"features-{first}", work / "train", args.max_rows_per_product, args.max_rows
            )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
