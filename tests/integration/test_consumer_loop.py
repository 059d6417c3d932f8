"""The consumer loop keeps batches out while it polls on: a batch's offsets are committed only
once it and every batch before it are acknowledged, since a commit covers all before it."""

from __future__ import annotations

import uuid

import pytest

from tasks.io.consumer_loop import _SentBatch
from tasks.io.delivery import DeliveryGroup
from tasks.io.kafka import ensure_topics
from tasks.services.featurizer import Featurizer

pytestmark = pytest.mark.integration


def test_a_batch_acknowledged_before_an_earlier_one_waits_for_it(kafka_settings):
    ensure_topics(kafka_settings)
    featurizer = Featurizer(kafka_settings, f"g-{uuid.uuid4().hex[:8]}")
    loop = featurizer.loop
    committed = []
    loop._commit = lambda offsets, asynchronous=False: committed.append(offsets)
    topic = kafka_settings.raw_topic
    earlier, later, last = DeliveryGroup(2), DeliveryGroup(1), DeliveryGroup(1)
    for group, offset in ((earlier, 10), (later, 20), (last, 30)):
        loop._sent.append(_SentBatch({(topic, 0): offset}, group, 0.0, (group.pending, 0.0)))
    try:
        later.settle_one()
        earlier.settle_one()  # one of its two records still out
        loop._commit_settled()
        assert committed == [] and featurizer.stats.features_out == 0

        earlier.settle_one()
        loop._commit_settled()
        assert committed == [{(topic, 0): 20}]  # both, in one commit; the last still out
        assert featurizer.stats.features_out == 3

        last.settle_one()
        loop._commit_settled()
        assert committed[-1] == {(topic, 0): 30}
        assert featurizer.stats.features_out == 4
    finally:
        loop._sent.clear()
        featurizer.close()
