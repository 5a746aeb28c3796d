"""bus/lean_fetch.py hands back exactly the records kafka-python's own unpacking does, for less CPU.

Offline, on arbitrary fetched batches built by kafka-python's own batch builder (keys, values, headers,
none of them, compressed or not, a fetch offset inside a batch, polls of any size); and through a real
broker with transactions committed and aborted, read_committed and read_uncommitted.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from bus.lean_fetch import LeanRecords, lean_consumer

TP = SimpleNamespace(topic="t", partition=3)
GZIP = 1
FIRST_OFFSET = 100

keys = st.none() | st.binary(max_size=12) | st.sampled_from([b"drv-00042", b"drv-00043"])
headers = st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3)
records = st.tuples(keys, st.none() | st.binary(max_size=300), headers)
batches = st.lists(st.tuples(st.lists(records, min_size=1, max_size=20), st.sampled_from([0, GZIP])), max_size=4)


def fetched(spec: list[tuple[list, int]]) -> bytes:
    """Batches of (key, value, headers) records from offset 100 on, as a fetch response holds them."""
    data, offset = bytearray(), FIRST_OFFSET
    for batch_records, compression in spec:
        builder = DefaultRecordBatchBuilder(2, compression, 0, -1, -1, -1, batch_size=1 << 20)
        for n, (key, value, record_headers) in enumerate(batch_records):
            builder.append(n, 1_795_645_154_000 + (offset + n) * 1000, key, value, record_headers)
        batch = bytearray(builder.build())
        batch[0:8] = offset.to_bytes(8, "big")  # base offset
        data += batch
        offset += len(batch_records)
    return bytes(data)


def unpack(cls: type, data: bytes, fetch_offset: int, polls: list[int]) -> list:
    """What successive ``take(n)`` calls return, with the position after each, until the partition's records
    are drained (the fetcher asks no more then)."""
    partition = cls(fetch_offset, TP, MemoryRecords(data))
    seen = []
    for n in [*polls, None]:
        if not partition:
            break
        seen.append((partition.take(n), partition.next_fetch_offset, partition.leader_epoch))
    return seen


@settings(max_examples=300)
@given(batches, st.integers(0, 40), st.lists(st.integers(1, 15), max_size=4))
def test_lean_records_are_kafka_pythons_records_for_any_batches_offset_and_poll_sizes(spec, skip, polls):
    data = fetched(spec)
    expected = unpack(Fetcher.PartitionRecords, data, FIRST_OFFSET + skip, polls)
    assert unpack(LeanRecords, data, FIRST_OFFSET + skip, polls) == expected


@settings(max_examples=200)
@given(batches, st.sampled_from([b"drv-00042", b""]), st.lists(st.integers(1, 15), max_size=4))
def test_a_keyed_read_returns_kafka_pythons_records_of_that_key_and_moves_past_the_others(spec, key, polls):
    data = fetched(spec)
    keyed = type("Keyed", (LeanRecords,), {"key": key})(FIRST_OFFSET, TP, MemoryRecords(data))
    got = [record for n in [*polls, None] if keyed for record in keyed.take(n)]
    every = Fetcher.PartitionRecords(FIRST_OFFSET, TP, MemoryRecords(data))
    assert got == [record for record in every.take() if record.key == key]
    assert keyed.next_fetch_offset == every.next_fetch_offset


@settings(max_examples=200)
@given(batches.filter(bool), st.data())
def test_a_damaged_batch_is_refused_as_corrupt_as_kafka_python_refuses_it(spec, data):
    damaged = bytearray(fetched(spec))
    at = data.draw(st.integers(0, len(damaged) - 1))
    damaged[at] ^= data.draw(st.integers(1, 255))

    def outcome(cls: type) -> object:
        try:
            return cls(FIRST_OFFSET, TP, MemoryRecords(bytes(damaged))).take()
        except CorruptRecordError:
            return CorruptRecordError
        except Exception as e:  # noqa: BLE001 - whatever kafka-python raises, ours must raise the same
            return type(e)

    assert outcome(LeanRecords) == outcome(Fetcher.PartitionRecords)


def test_a_header_name_that_is_not_utf8_is_read_with_replacement_characters_where_kafka_python_raises():
    data = bytearray(fetched([([(b"k", b"fix 1", [("h\u00e9", b"1")]), (b"k", b"fix 2", [])], 0)]))
    at = data.index("h\u00e9".encode())
    data[at + 1] = 0xFF  # a Java broker stores a name as it was sent
    data[17:21] = crc32c.crc32c(bytes(data[21:])).to_bytes(4, "big")  # still a batch that passes its check
    with pytest.raises(CorruptRecordError):  # kafka-python turns the UnicodeDecodeError into this
        Fetcher.PartitionRecords(FIRST_OFFSET, TP, MemoryRecords(bytes(data))).take()
    records = LeanRecords(FIRST_OFFSET, TP, MemoryRecords(bytes(data))).take()
    assert [(r.value, r.headers) for r in records] == [(b"fix 1", [("h\ufffd\ufffd", b"1")]), (b"fix 2", [])]


def test_a_consumer_with_deserializers_keeps_kafka_pythons_unpacking():
    data = fetched([([(b"k", b"v", [("h", b"1")])], 0)])
    upper = SimpleNamespace(deserialize=lambda _topic, _headers, value: value.upper())
    lean = LeanRecords(FIRST_OFFSET, TP, MemoryRecords(data), value_deserializer=upper).take()
    assert [record.value for record in lean] == [b"V"]


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_through_a_broker_a_lean_consumer_reads_what_kafka_pythons_reads(kafka_bootstrap, make_topic, isolation):
    topic = make_topic("lean")
    write_committed_aborted_and_plain_records(kafka_bootstrap, topic)
    lean = read_all(lean_consumer, kafka_bootstrap, topic, isolation)
    plain = read_all(KafkaConsumer, kafka_bootstrap, topic, isolation)
    expected = [b"a", b"b", b"d", b"e"] if isolation == "read_committed" else [b"a", b"b", b"c", b"d", b"e"]
    assert [record.value for record in lean] == expected
    assert lean == plain


def write_committed_aborted_and_plain_records(bootstrap: str, topic: str) -> None:
    transactional = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"lean-{uuid.uuid4().hex}")
    plain = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        transactional.init_transactions()
        for values, commit in (([b"a", b"b"], True), ([b"c"], False), ([b"d"], True)):
            transactional.begin_transaction()
            for value in values:
                transactional.send(topic, key=b"drv-1", value=value, headers=[("trace", value)])
            transactional.flush()
            if commit:
                transactional.commit_transaction()
            else:
                transactional.abort_transaction()
        plain.send(topic, key=b"drv-2", value=b"e").get(timeout=10)
    finally:
        transactional.close(timeout=5)
        plain.close(timeout=5)


def read_all(factory, bootstrap: str, topic: str, isolation: str) -> list:
    consumer = factory(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records = []
        for _ in range(50):
            if consumer.position(tp) >= end:
                break
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        assert consumer.position(tp) >= end, f"read up to {consumer.position(tp)} of {end}"
        return records
    finally:
        consumer.close()
