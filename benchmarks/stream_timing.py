"""What the streaming benchmarks share (``bench_featurize``, ``bench_score``, ``bench_monitor``):
filling a topic, running a consumer service in a thread until it has answered every record, and
the figures of that run. Not a benchmark itself (``cryptovol bench`` runs ``bench_*.py`` only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


def produce_all(producer: Any, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    """Produce every ``(key, value)`` to ``topic``, waiting while the local queue is full, and
    flush; how many were produced."""
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    producer.flush(300)
    return count


@dataclass
class StreamTiming:
    """Wall and process CPU time from the first record a service took to its last answer; the
    figures are None when it never finished."""

    first: float | None = None
    last: float | None = None
    cpu_first: float = 0.0
    cpu_last: float = 0.0

    @property
    def seconds(self) -> float | None:
        return self.last - self.first if self.first is not None and self.last is not None else None

    def per_s(self, records: int) -> int | None:
        return round(records / self.seconds) if self.seconds else None

    def cpu_us_per(self, records: int) -> float | None:
        """CPU of the whole process (the service's thread, librdkafka's threads, the timing loop)
        per record, in microseconds: less sensitive to a loaded machine than records/s."""
        if not self.seconds:
            return None
        return round(1e6 * (self.cpu_last - self.cpu_first) / records, 1)

    def share(self, records: int, alone_per_s: float) -> float | None:
        """The share of the wall time that the part timed alone at ``alone_per_s`` accounts for."""
        return round(records / alone_per_s / self.seconds, 3) if self.seconds else None


def run_until_answered(
    service: Any,
    taken: Callable[[], bool],
    answered: Callable[[], bool],
    timeout_s: float = 600,
) -> StreamTiming:
    """Run ``service.run(stop)`` in a thread until ``answered()`` (at most ``timeout_s``), timing it
    from the first moment ``taken()`` holds; the service is stopped and closed."""
    timing = StreamTiming()
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = time.perf_counter()
        if timing.first is None and taken():
            timing.first, timing.cpu_first = now, time.process_time()
        if answered():
            timing.last, timing.cpu_last = now, time.process_time()
            break
        time.sleep(0.002)
    stop.set()
    runner.join(30)
    service.close()
    return timing


def mean_latency_ms(histogram: Any, name: str) -> float | None:
    """The mean of the unlabelled Prometheus histogram ``name``, in milliseconds."""
    samples = {s.name: s.value for m in histogram.collect() for s in m.samples if not s.labels}
    count = samples.get(f"{name}_count", 0)
    return round(1000 * samples[f"{name}_sum"] / count, 2) if count else None
