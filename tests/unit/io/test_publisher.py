"""The publisher never drops a record silently: failures are retried, counted, reported."""

from __future__ import annotations

from confluent_kafka import KafkaError

from tasks.core.messages import RawTick
from tasks.io.publisher import TickPublisher


class _Error:
    def __init__(self, fatal: bool = False, code: int | None = None) -> None:
        self._fatal = fatal
        self._code = code

    def fatal(self) -> bool:
        return self._fatal

    def code(self) -> int | None:
        return self._code

    def __str__(self) -> str:
        return "broker said no"


class FakeProducer:
    """Queues produced records; poll() reports each with the next scripted outcome."""

    def __init__(self, outcomes: list[object | None], buffer_errors: int = 0) -> None:
        self.outcomes = list(outcomes)
        self.buffer_errors = buffer_errors
        self.queue: list[tuple[str, bytes, object]] = []
        self.produced: list[tuple[str, bytes]] = []

    def produce(self, topic, value, key, on_delivery):
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("queue full")
        self.queue.append((key, value, on_delivery))
        self.produced.append((key, value))

    def poll(self, timeout=0):
        queued, self.queue = self.queue, []
        for _key, _value, report in queued:
            report(self.outcomes.pop(0) if self.outcomes else None, None)
        return len(queued)

    def flush(self, timeout=None):
        return self.poll()

    def __len__(self):
        return len(self.queue)


def _tick(seq: int) -> RawTick:
    return RawTick(
        "BTC-USD",
        "2026-01-01T00:00:00Z",
        seq,
        "2026-01-01T00:00:00Z",
        "s",
        "update",
        0,
        {"product_id": "BTC-USD", "price": "1"},
    )


def test_every_delivery_is_counted():
    producer = FakeProducer([None, None, None])
    publisher = TickPublisher(producer, "t")
    for seq in range(3):
        publisher.publish(_tick(seq))
    assert publisher.flush(1) == 0
    assert publisher.stats.delivered == 3 and publisher.stats.errors == 0
    assert producer.produced[0] == ("BTC-USD", _tick(0).to_bytes())


def test_a_failed_delivery_is_produced_again():
    errors = []
    producer = FakeProducer([_Error(), None])
    publisher = TickPublisher(producer, "t", on_error=lambda: errors.append(1))
    publisher.publish(_tick(0))
    assert publisher.flush(1) == 0
    assert publisher.stats.errors == 1 and publisher.stats.retried == 1
    assert publisher.stats.delivered == 1 and publisher.stats.failed == 0
    assert errors == [1]
    assert producer.produced[0] == producer.produced[1]


def test_what_keeps_failing_is_given_up_counted_and_reported():
    producer = FakeProducer([_Error()] * 3)
    publisher = TickPublisher(producer, "t", max_attempts=3)
    publisher.publish(_tick(0))
    assert publisher.flush(1) == 1
    assert publisher.stats.failed == 1 and publisher.stats.delivered == 0
    assert publisher.stats.errors == 3 and publisher.stats.retried == 2
    assert len(producer.produced) == 3


def test_a_fatal_error_is_not_retried():
    producer = FakeProducer([_Error(fatal=True)])
    publisher = TickPublisher(producer, "t")
    publisher.publish(_tick(0))
    assert publisher.flush(1) == 1
    assert publisher.stats.retried == 0 and publisher.stats.failed == 1


def test_a_full_local_queue_waits_instead_of_dropping():
    producer = FakeProducer([None], buffer_errors=2)
    publisher = TickPublisher(producer, "t")
    publisher.publish(_tick(0))
    assert publisher.flush(1) == 0
    assert publisher.stats.delivered == 1


def test_a_record_the_broker_refuses_as_too_large_is_counted_once_and_not_sent_again():
    producer = FakeProducer([_Error(code=KafkaError.MSG_SIZE_TOO_LARGE), None])
    publisher = TickPublisher(producer, "t")
    publisher.publish(_tick(0), where="rec.ndjson:7")
    publisher.publish(_tick(1))
    assert publisher.flush(1) == 1
    assert publisher.stats.refused == 1 and publisher.stats.delivered == 1
    assert publisher.stats.retried == 0 and len(producer.produced) == 2
