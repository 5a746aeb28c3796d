"""A consumer that hands back only the records of one key, without building the others: tracks twice as fast.

A driver's track must look at every record of its partition (Kafka has no index by key): about 620,000
records for an hour of a 1,000-driver fleet on 6 partitions. kafka-python turns each into a Python object
(``DefaultRecordBatch._read_msg`` decodes every field, copies key, value and headers, then the fetcher wraps
it in a ``ConsumerRecord``): ~5 µs a record, 3.7 s for that hour; ~1 s with this (docs/benchmarks.md). :func:`only_key`
swaps, for one consumer, the class that unpacks a fetched partition for :class:`KeyedRecords`, which walks
the records of each uncompressed batch reading only their length, offset, time and key, and builds a record
only for the key asked for. Compressed batches, old message formats and control batches go through
kafka-python's own code. This is kafka-python 3.0.12's internal API (``Fetcher.PartitionRecords``; pinned in
requirements.txt): tests/test_tracks.py reads tracks through it from a real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.util import decode_varint

MAGIC_V2 = 2
NO_COMPRESSION = 0
LOG_APPEND_TIME = 1


def only_key(consumer: KafkaConsumer, key: bytes) -> None:
    """Make ``consumer`` return only the records keyed ``key`` (its position still moves past all of them)."""
    consumer._fetcher.PartitionRecords = type("KeyedRecordsOf", (KeyedRecords,), {"key": key})


class KeyedRecords(Fetcher.PartitionRecords):
    """The records of one fetched partition that are keyed :attr:`key` (set by :func:`only_key`)."""

    key: bytes = b""

    def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Iterator[Any]:
        batch = records.next_batch()
        last = None
        while batch is not None:
            last = batch
            if self.check_crcs and not batch.validate_crc():
                raise CorruptRecordError(f"record batch for {tp} at offset {batch.base_offset} failed crc check")
            if batch.magic == MAGIC_V2 and batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset  # a transaction marker: nothing for the reader
            elif batch.magic == MAGIC_V2 and batch.compression_type == NO_COMPRESSION:
                yield from self._walk(tp, batch)
            else:
                yield from self._parsed(tp, batch)
            batch = records.next_batch()
        if last is not None and last.magic == MAGIC_V2:
            self.next_fetch_offset = last.next_offset  # past records removed by compaction too
        self.drain()

    def _walk(self, tp: Any, batch: Any) -> Iterator[Any]:
        """Each record of an uncompressed v2 batch: length, attributes, time and offset deltas, key; the rest
        is skipped by length unless the key is ours (Kafka's record format v2)."""
        key, size = self.key, len(self.key)
        buffer, pos = batch._buffer, batch._pos
        base_offset, first_ts, ts_type = batch.base_offset, batch.first_timestamp, batch.timestamp_type
        for _ in range(batch._num_records):
            length, pos = decode_varint(buffer, pos)
            end = pos + length
            ts_delta, at = decode_varint(buffer, pos + 1)  # attributes: one byte, unused
            offset_delta, at = decode_varint(buffer, at)
            key_len, at = decode_varint(buffer, at)
            self.records_read += 1
            if key_len == size and buffer[at : at + size] == key:
                value_len, at = decode_varint(buffer, at + size)
                value = bytes(buffer[at : at + value_len]) if value_len >= 0 else None
                offset = base_offset + offset_delta
                timestamp = batch.max_timestamp if ts_type == LOG_APPEND_TIME else first_ts + ts_delta
                self.next_fetch_offset = offset + 1
                yield ConsumerRecord(
                    tp.topic, tp.partition, -1, offset, timestamp, ts_type, key, value, [], None, size, value_len, -1
                )
            pos = end
        if pos != len(buffer):
            raise CorruptRecordError(f"{len(buffer) - pos} bytes left after the records of a batch of {tp}")
        self.next_fetch_offset = batch.next_offset

    def _parsed(self, tp: Any, batch: Any) -> Iterator[Any]:
        """A batch kafka-python parses itself (compressed, or an old format): its records keyed ours."""
        for record in batch:
            self.records_read += 1
            self.next_fetch_offset = record.offset + 1
            if record.key == self.key:
                yield ConsumerRecord(
                    tp.topic,
                    tp.partition,
                    -1,
                    record.offset,
                    record.timestamp,
                    record.timestamp_type,
                    record.key,
                    record.value,
                    record.headers,
                    None,
                    len(self.key),
                    -1 if record.value is None else len(record.value),
                    -1,
                )
