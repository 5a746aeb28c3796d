"""A simulated driver's fix as the record the producer sends, built for 30,000 fixes a second.

The value is the JSON object of :func:`fleet.schema.encode_fix` for the same fix (the same fields,
the same rounding; tests/test_simulator_wire.py holds them equal), made by orjson straight from the
driver's state instead of through a :class:`fleet.schema.Fix` and the standard library's encoder,
which cost two to three times as much. The key is the driver id, encoded once per driver, and so is its
partition: the one kafka-python's default partitioner would pick (:func:`bus.partitioning.key_partition`),
given to the producer so it does not hash every record again.

:class:`Appender` hands each record to kafka-python's record accumulator the way ``KafkaProducer.send``
does after its per-record checks, which do not apply to these records (no serializer, no headers, a
known topic and partition, a few hundred bytes, not transactional) and cost a quarter of a fix's CPU.
It needs kafka-python's internals as of the pinned 3.0.12 and falls back to ``send`` otherwise.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.structs import TopicPartition

from bus.partitioning import key_partition
from fleet.schema import COORDINATE_DECIMALS, encode_key
from simulator.fleet_model import SimulatedDriver
from simulator.motion import KMH_PER_MPS

log = logging.getLogger(__name__)

_dumps = orjson.dumps
# The parameters of RecordAccumulator.append that Appender relies on (kafka-python 3.0.12).
_APPEND_PARAMETERS = ("tp", "timestamp_ms", "key", "value", "headers")


def fix_value(driver: SimulatedDriver, timestamp: float) -> bytes:
    """The driver's next fix as JSON bytes; counts it in ``driver.seq`` like :meth:`SimulatedDriver.fix`."""
    car = driver.car
    seq = driver.seq
    driver.seq = seq + 1
    return _dumps(
        {
            "driver_id": driver.driver_id,
            "latitude": round(car.lat, COORDINATE_DECIMALS),
            "longitude": round(car.lon, COORDINATE_DECIMALS),
            "timestamp": timestamp,
            "heading": round(car.heading, 1),
            "speed_kmh": round(car.speed * KMH_PER_MPS, 1),
            "status": driver.status,
            "seq": seq,
        }
    )


def routes(drivers: Sequence[SimulatedDriver], partitions: int) -> list[tuple[bytes, int]]:
    """Each driver's record key and partition, in the fleet's order."""
    keys = [encode_key(driver.driver_id) for driver in drivers]
    return [(key, key_partition(key, partitions)) for key in keys]


class Appender:
    """Send one record to a partition of one topic: ``send(value, key, partition)`` returns its future.

    With ``direct`` (the default) and kafka-python's internals as expected, the record goes straight
    into the producer's accumulator, and the sender thread is woken when a batch fills or a new one
    starts, as ``KafkaProducer.send`` does; acks, idempotence, retries, batching and the futures are
    the producer's own. Otherwise, or after the producer is closed, through ``KafkaProducer.send``.
    """

    def __init__(self, producer: KafkaProducer, topic: str, partitions: int, direct: bool = True) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.direct = direct and self._internals_as_expected()
        if direct and not self.direct:
            log.info("kafka-python's internals are not those of 3.0.12: sending through KafkaProducer.send")
        self.send: Callable[[bytes, bytes, int], Any] = self._append if self.direct else self._send
        if self.direct:
            internals: Any = producer
            self._accumulate, self._wakeup = internals._accumulator.append, internals._sender.wakeup

    def _internals_as_expected(self) -> bool:
        producer: Any = self.producer
        accumulator, sender = getattr(producer, "_accumulator", None), getattr(producer, "_sender", None)
        append, wakeup = getattr(accumulator, "append", None), getattr(sender, "wakeup", None)
        if append is None or wakeup is None or producer.config.get("transactional_id") is not None:
            return False
        if producer.config.get("key_serializer") or producer.config.get("value_serializer"):
            return False
        return tuple(inspect.signature(append).parameters)[: len(_APPEND_PARAMETERS)] == _APPEND_PARAMETERS

    def _send(self, value: bytes, key: bytes, partition: int) -> Any:
        return self.producer.send(self.topic, value, key, None, partition)

    def _append(self, value: bytes, key: bytes, partition: int) -> Any:
        producer: Any = self.producer
        if producer._closed:
            return self._send(value, key, partition)  # raises what send raises
        future, batch_is_full, new_batch, _ = self._accumulate(self.partitions[partition], None, key, value, [])
        if batch_is_full or new_batch:
            self._wakeup()
        return future
