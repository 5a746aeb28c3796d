"""kafka-python's fetched records, unpacked with less Python per record; optionally only one key's.

kafka-python turns each fetched record into Python objects twice: ``DefaultRecordBatch._read_msg`` builds a
``DefaultRecord`` (copying key, value and headers), then the fetcher reads it back through properties, a
CRC call that is a no-op for format v2, two deserializer calls and a header-size sum, and builds the
``ConsumerRecord``. Measured on 100,000 fetched fixes, unpacking alone: 5.8-10.9 µs a record that way,
4.4-6.4 µs read straight into the ``ConsumerRecord`` (docs/benchmarks.md, "2026-12, third pass").

:func:`lean_consumer` makes a consumer that unpacks each fetched partition with :class:`LeanRecords`,
which walks each v2 batch itself (decompressed by kafka-python first) and yields the same ``ConsumerRecord``
values kafka-python would (tests/test_lean_fetch.py compares them on arbitrary batches). :func:`only_key`
does the same but builds only the records of one key: a driver's track must look at every record of its
partitions (Kafka has no index by key), and skipping the others unbuilt makes tracks twice as fast.

Old message formats go through kafka-python's own record parsing; CRCs are checked as kafka-python checks
them; ``read_committed`` skips aborted transactions with kafka-python's own bookkeeping. One difference, on
purpose: a header name that is not UTF-8 (a Java broker stores it as sent) is read with replacement
characters, where kafka-python raises and its consumer would fetch the same record forever. Consumers with
deserializers keep kafka-python's code entirely. This is kafka-python 3.0.12's
internal API (``Fetcher.PartitionRecords``, pinned in requirements.txt).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.errors import CorruptRecordError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.util import decode_varint

MAGIC_V2 = 2
# ConsumerRecord is a namedtuple: its constructor is a Python function (6 % of a busy dashboard's CPU in a
# profile), tuple.__new__ the C call it ends in.
new_record = tuple.__new__
LOG_APPEND_TIME = 1


def lean_consumer(**config: Any) -> KafkaConsumer:
    """A ``KafkaConsumer(**config)`` that unpacks its fetched records with :class:`LeanRecords`: the same
    records, for less CPU."""
    consumer = KafkaConsumer(**config)
    consumer._fetcher.PartitionRecords = LeanRecords
    return consumer


def only_key(consumer: KafkaConsumer, key: bytes) -> None:
    """Make ``consumer`` return only the records keyed ``key`` (its position still moves past all of them)."""
    consumer._fetcher.PartitionRecords = type("KeyedRecordsOf", (LeanRecords,), {"key": key})


class LeanRecords(Fetcher.PartitionRecords):  # type: ignore[misc]  # kafka-python is untyped
    """The records of one fetched partition, as kafka-python builds them; only those keyed :attr:`key` when
    it is set (by :func:`only_key`)."""

    key: bytes | None = None

    def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Iterator[Any]:
        if key_deserializer is not None or value_deserializer is not None:
            yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
            return
        batch = records.next_batch()
        last = None
        while batch is not None:
            last = batch
            if self.check_crcs and not batch.validate_crc():
                raise CorruptRecordError(f"record batch for {tp} at offset {batch.base_offset} failed crc check")
            if batch.magic != MAGIC_V2:
                yield from self._legacy(tp, batch)
            elif self._skipped(batch):
                self.next_fetch_offset = batch.next_offset
            else:
                batch._maybe_uncompress()  # kafka-python's decompression, then the same walk
                yield from self._walk(tp, batch)
            batch = records.next_batch()
        if last is not None and last.magic == MAGIC_V2:
            self.next_fetch_offset = last.next_offset  # past records removed by compaction too
        self.drain()

    def _skipped(self, batch: Any) -> bool:
        """A v2 batch the reader must not see: a transaction marker, or, read_committed, an aborted batch
        (kafka-python's own bookkeeping of the aborted transactions the fetch response listed)."""
        self.leader_epoch = batch.leader_epoch
        if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
            self._consume_aborted_transactions_up_to(batch.last_offset)
            if self._contains_abort_marker(batch):
                self.aborted_producer_ids.discard(batch.producer_id)
            elif self._is_batch_aborted(batch):
                return True
        return bool(batch.is_control_batch)

    def _walk(self, tp: Any, batch: Any) -> Iterator[Any]:
        """Each record of a (decompressed) v2 batch, read field by field (Kafka's record format v2): length,
        attributes, time and offset deltas, key, value, headers. With :attr:`key` set, a record of another
        key is skipped by its length once its key is read."""
        only = self.key
        # One copy of the batch as bytes, whose slices are bytes already: a third of the time of copying
        # a bytearray's slice (itself a copy) into bytes, for every key and value.
        buffer, pos = bytes(batch._buffer), batch._pos
        topic, partition, epoch = tp.topic, tp.partition, batch.leader_epoch
        base_offset, first_ts, ts_type = batch.base_offset, batch.first_timestamp, batch.timestamp_type
        log_append_ts = batch.max_timestamp if ts_type == LOG_APPEND_TIME else None
        self.bytes_read += len(buffer) - pos
        self.records_read += batch._num_records
        for _ in range(batch._num_records):
            length, pos = decode_varint(buffer, pos)
            end = pos + length
            ts_delta, at = decode_varint(buffer, pos + 1)  # attributes: one byte, unused
            offset_delta, at = decode_varint(buffer, at)
            key_len, at = decode_varint(buffer, at)
            if key_len >= 0:
                key = buffer[at : at + key_len]
                at += key_len
            else:
                key = None
            if only is not None and key != only:
                pos = end
                continue
            value_len, at = decode_varint(buffer, at)
            if value_len >= 0:
                value = buffer[at : at + value_len]
                at += value_len
            else:
                value = None
            header_count, at = decode_varint(buffer, at)
            headers, header_size, at = _headers(buffer, at, header_count) if header_count else ([], -1, at)
            if at != end:
                raise CorruptRecordError(f"a record of {tp} is {length} bytes long but its fields end at {at - pos}")
            pos = end
            offset = base_offset + offset_delta
            self.next_fetch_offset = offset + 1
            yield new_record(
                ConsumerRecord,
                (
                    topic,
                    partition,
                    epoch,
                    offset,
                    log_append_ts if log_append_ts is not None else first_ts + ts_delta,
                    ts_type,
                    key,
                    value,
                    headers,
                    None,  # format v2 has no per-record checksum
                    key_len,
                    value_len,
                    header_size,
                ),
            )
        if pos != len(buffer):
            raise CorruptRecordError(f"{len(buffer) - pos} bytes left after the records of a batch of {tp}")
        self.next_fetch_offset = batch.next_offset

    def _legacy(self, tp: Any, batch: Any) -> Iterator[Any]:
        """A batch of an old message format (v0, v1; no Kafka 4 broker writes them): kafka-python parses it."""
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise CorruptRecordError(f"record of {tp} at offset {record.offset} failed crc check")
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            self.next_fetch_offset = record.offset + 1
            if self.key is not None and record.key != self.key:
                continue
            headers = record.headers
            yield ConsumerRecord(
                tp.topic,
                tp.partition,
                self.leader_epoch,
                record.offset,
                record.timestamp,
                record.timestamp_type,
                record.key,
                record.value,
                headers,
                record.checksum,
                -1 if record.key is None else len(record.key),
                -1 if record.value is None else len(record.value),
                _header_size(headers) if headers else -1,
            )


def _headers(buffer: Any, at: int, count: int) -> tuple[list[tuple[str, bytes | None]], int, int]:
    """``count`` record headers from ``at``: the headers, their size as kafka-python counts it, the end."""
    if count < 0:
        raise CorruptRecordError(f"invalid number of record headers {count}")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        name_len, at = decode_varint(buffer, at)
        if name_len < 0:
            raise CorruptRecordError(f"invalid negative header key size {name_len}")
        name = buffer[at : at + name_len].decode("utf-8", "replace")
        at += name_len
        value_len, at = decode_varint(buffer, at)
        if value_len >= 0:
            headers.append((name, buffer[at : at + value_len]))
            at += value_len
        else:
            headers.append((name, None))
    return headers, _header_size(headers), at


def _header_size(headers: list[tuple[str, bytes | None]]) -> int:
    return sum(len(name.encode("utf-8")) + (len(value) if value is not None else 0) for name, value in headers)
