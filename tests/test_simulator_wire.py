"""The simulator's own encoding of fixes (simulator/wire.py) against fleet.schema's, and its record path. No broker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka.partitioner import DefaultPartitioner
from kafka.structs import TopicPartition

from fleet.schema import encode_fix, parse_fix
from simulator.fleet_model import FleetConfig, SimulatedFleet
from simulator.status import StatusMix
from simulator.wire import Appender, fix_value, routes


@pytest.mark.parametrize("street_grid", [False, True])
def test_a_fix_encoded_by_the_simulator_is_the_same_json_as_encode_fix(street_grid):
    config = FleetConfig(drivers=50, street_grid=street_grid, mix=StatusMix(offline_share=0.3))
    by_fix, by_wire = SimulatedFleet(config, seed=7), SimulatedFleet(config, seed=7)
    compared = 0
    for slot in range(config.drivers * 40):
        timestamp = 1_764_600_000.0 + slot * config.slot_s
        fix = by_fix.fix_for_slot(slot, timestamp)
        driver = by_wire.driver_for_slot(slot)
        assert (fix is None) == (driver is None)
        if fix is None or driver is None:
            continue
        value = fix_value(driver, timestamp)
        assert json.loads(value) == json.loads(encode_fix(fix))
        assert list(json.loads(value)) == list(json.loads(encode_fix(fix))), "same fields in the same order"
        assert parse_fix(value, now=timestamp) == parse_fix(encode_fix(fix), now=timestamp)
        compared += 1
    assert compared > config.drivers * 20
    # Both counted every fix in the driver's seq, so the two fleets are still in step.
    assert [d.seq for d in by_fix.drivers] == [d.seq for d in by_wire.drivers]


def test_routes_are_the_keys_and_the_partitions_of_kafka_pythons_default_partitioner():
    fleet = SimulatedFleet(FleetConfig(drivers=300), seed=1)
    partitioner = DefaultPartitioner()
    for partitions in (1, 6, 7):
        cluster = Cluster(partitions)
        for driver, (key, partition) in zip(fleet.drivers, routes(fleet.drivers, partitions), strict=True):
            assert key == driver.driver_id.encode()
            assert partition == partitioner.partition("fixes", key, key, None, None, cluster)


class Cluster:
    """The part of kafka-python's ClusterMetadata its default partitioner asks."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"fixes"}

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, _topic: str) -> set[int]:
        return self.partitions


class FakeAccumulator:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def append(self, tp, timestamp_ms, key, value, headers, now=None, abort_on_new_batch=False):
        self.records.append((tp, timestamp_ms, key, value, headers))
        return "future", False, len(self.records) == 1, False


class FakeSender:
    wakeups = 0

    def wakeup(self) -> None:
        self.wakeups += 1


class FakeProducer:
    """Only what Appender looks at of a KafkaProducer."""

    def __init__(self, **config: Any) -> None:
        self.config = {"transactional_id": None, "key_serializer": None, "value_serializer": None} | config
        self._accumulator, self._sender, self._closed = FakeAccumulator(), FakeSender(), False
        self.sent: list[tuple[Any, ...]] = []

    def send(self, *args: Any) -> str:
        self.sent.append(args)
        return "sent"


def fake_producer(**config: Any) -> Any:
    return FakeProducer(**config)


def test_the_appender_puts_records_in_the_accumulator_and_wakes_the_sender_for_a_new_batch():
    producer: Any = fake_producer()
    appender = Appender(producer, "fixes", partitions=6)
    assert appender.direct
    assert appender.send(b"{}", b"drv-00001", 4) == "future"
    assert appender.send(b"{}", b"drv-00002", 1) == "future"
    assert producer._accumulator.records == [
        (TopicPartition("fixes", 4), None, b"drv-00001", b"{}", []),
        (TopicPartition("fixes", 1), None, b"drv-00002", b"{}", []),
    ]
    assert producer._sender.wakeups == 1 and producer.sent == []


@pytest.mark.parametrize(
    "config", [{"transactional_id": "t"}, {"value_serializer": str.encode}, {"direct": False}], ids=str
)
def test_the_appender_falls_back_to_send_when_it_cannot_go_direct(config):
    direct = config.pop("direct", True)
    producer: Any = fake_producer(**config)
    appender = Appender(producer, "fixes", partitions=6, direct=direct)
    assert not appender.direct
    assert appender.send(b"{}", b"drv-00001", 4) == "sent"
    assert producer.sent == [("fixes", b"{}", b"drv-00001", None, 4)] and producer._accumulator.records == []


def test_the_appender_falls_back_to_send_once_the_producer_is_closed():
    producer: Any = fake_producer()
    appender = Appender(producer, "fixes", partitions=6)
    producer._closed = True
    assert appender.send(b"{}", b"drv-00001", 4) == "sent"
    assert producer._accumulator.records == []
