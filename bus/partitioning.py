"""Where Kafka's default partitioner puts a keyed record, computed without asking Kafka."""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def key_partition(key: bytes, partitions: int) -> int:
    """The partition kafka-python's default partitioner gives a record with ``key`` (murmur2, as Java clients do).

    Readers use it to go straight to the one partition that holds a key's records (a driver's fixes, an
    area's ride requests) instead of reading every partition.
    """
    hashed: int = murmur2(key)  # kafka-python has no type hints
    return (hashed & 0x7FFFFFFF) % partitions
