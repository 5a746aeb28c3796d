"""The dashboard's Kafka consumer: every partition, no consumer group, one green thread.

Each dashboard instance shows the whole fleet, so it assigns itself every partition of the topic
(no group id, nothing committed, no rebalances with other instances). On start it seeks each
partition to the first record of the last ``readback_s`` seconds (``offsets_for_times``) so a
restarted dashboard shows the fleet at once. Records are validated here and handed to the tick
task in batches; refused ones are counted and copied to ``<topic>.dlq``.

Why a green thread and not a real one (measured on this project's 2-core machine, see the report
of issue 4): both recovered from broker stops and kills within 1-2 s once kafka-python's reconnect
backoff is capped at 1 s (6-13 s with its 30 s default). With kafka-python's default fetch sizes a
green consumer decoding a backlog delayed the 100 ms tick by up to 300 ms; with fetches of at most
1 MiB, polls of at most 1,000 records and a yield after each poll, the worst tick delay was 128 ms
against 123 ms for a real thread, at the same ~110,000 parsed fixes/s. A real thread would also
share eventlet's green locks (logging's, at least) across operating-system threads, which eventlet
does not support. kafka-python 3 runs its network loop in a ``threading.Thread``: after
``eventlet.monkey_patch()`` that is a green thread too, so nothing here blocks the hub.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS, consume_until_stopped
from bus.deadletter import DeadLetterSink
from dashboard.settings import DashboardSettings
from fleet.schema import Fix, InvalidMessage, parse_fix
from fleet.settings import bootstrap_list

log = logging.getLogger(__name__)

# The broker answers a fetch once it holds FETCH_MIN_BYTES for it or after this wait: 500 ms
# (kafka-python's default) would show up as marker lag on a live map; 50 ms costs ~20 empty fetches a second.
FETCH_MAX_WAIT_MS = 50
# With kafka-python's 1 byte, a trickle of fixes is fetched a few records at a time: at 1,000 fixes/s
# the fetch round trips took half the dashboard's CPU (13 % of a core, 7 % with 16 KiB, which 10,000
# fixes/s fill in 10 ms; measured with bench/pipeline.py). The price is at most 50 ms more latency,
# and only for small fleets.
FETCH_MIN_BYTES = 16 * 1024
POLL_TIMEOUT_MS = 100
# Small fetches and polls: the consumer yields to the web server after each poll, so these bound how
# long it holds the other green threads (a few milliseconds of decoding and validating).
MAX_BATCH_RECORDS = 1000
FETCH_MAX_BYTES = 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 256 * 1024
# After a broker restart, reconnect within a second instead of backing off up to 30 s.
RECONNECT_BACKOFF_MAX_MS = 1000
# How often end offsets are asked for: lag for the stats, and the proof that Kafka still answers.
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_MS = 2000
PARTITION_REFRESH_S = 30.0
TOPIC_WAIT_S = 2.0
# Batches waiting for the tick task; past it the consumer waits and Kafka keeps the records.
QUEUE_BATCHES = 200
# A refused message must not stall the consumer for kafka-python's default minute when Kafka is away.
DEAD_LETTER_MAX_BLOCK_MS = 5000


@dataclass
class Batch:
    """What one poll brought: valid fixes with their partition and offset, and refusals by reason."""

    received_at: float
    fixes: list[tuple[Fix, int, int]] = field(default_factory=list)
    invalid: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    end_offset: int | None
    position: int | None

    @property
    def lag(self) -> int | None:
        if self.end_offset is None or self.position is None:
            return None
        return max(0, self.end_offset - self.position)


@dataclass(frozen=True)
class FeedStatus:
    """The consumer as the green side sees it; replaced whole, never mutated, so reading it needs no lock."""

    connected: bool = False
    error: str | None = "consumer not started"
    partitions: tuple[PartitionStatus, ...] = ()
    readback_done: bool = False
    heartbeat: float = field(default_factory=time.monotonic)  # the consumer loop's last turn
    running: bool = False

    @property
    def lag(self) -> int | None:
        lags = [p.lag for p in self.partitions if p.lag is not None]
        return sum(lags) if lags else None


def dead_letter_sink(bootstrap: str, client_id: str) -> DeadLetterSink:
    """Where a dashboard consumer copies refused records: short waits, so Kafka away never stalls the map."""
    return DeadLetterSink(
        bootstrap,
        client_id=client_id + "-dlq",
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        max_block_ms=DEAD_LETTER_MAX_BLOCK_MS,
    )


class KafkaFeed:
    """Consumes ``settings.topic`` in :meth:`run` (a green thread); the tick task calls :meth:`drain`."""

    def __init__(
        self,
        settings: DashboardSettings,
        sleep: Callable[[float], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.status = FeedStatus()
        self._sleep = sleep
        self._clock = clock
        self._bootstrap = bootstrap_list(settings.bootstrap_servers)
        self._batches: deque[Batch] = deque()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._next_offsets: dict[int, int] = {}  # partition -> next offset to read, kept across reconnects
        self._readback_ends: dict[int, int] = {}
        self._readback_started = time.monotonic()
        self._readback_records = 0
        self.client_id = f"dashboard-{socket.gethostname()}-{os.getpid()}"
        self._dead_letters = dead_letter_sink(settings.bootstrap_servers, self.client_id)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the consumer to finish and wait for it to close its clients."""
        self._stop.set()
        self._finished.wait(timeout_s)

    def drain(self) -> list[Batch]:
        """The batches consumed since the previous call."""
        batches = list(self._batches)
        self._batches.clear()
        return batches

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting as long as it takes."""
        try:
            self._run()
        finally:
            self._finished.set()

    def _run(self) -> None:
        self._publish(running=True, error=f"Kafka at {self.settings.bootstrap_servers} is not reachable yet")
        consume_until_stopped(
            self._new_consumer, self._consume, "dashboard consumer", self.settings.bootstrap_servers, self._stop,
            on_failure=lambda e: self._publish(connected=False, error=f"consumer failed: {type(e).__name__}: {e}"),
        )  # fmt: skip
        self._dead_letters.close()
        self._publish(running=False, connected=False, error="consumer stopped")
        log.info("consumer stopped")

    def _new_consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self.client_id,
            group_id=None,  # every instance reads every partition and commits nothing
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            fetch_min_bytes=FETCH_MIN_BYTES,
            max_poll_records=MAX_BATCH_RECORDS,
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )

    def _consume(self, consumer: KafkaConsumer) -> None:
        partitions = self._wait_for_partitions(consumer)
        if not partitions:
            return
        self._assign(consumer, partitions)
        next_probe = next_refresh = time.monotonic()
        while not self._stop.is_set():
            records = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH_RECORDS)
            if records:
                self._hand_over(self._parse(records))
                self._check_readback()
            self._sleep(0)  # let the web server and the tick run between two polls
            now = time.monotonic()
            if now >= next_probe:
                self._probe(consumer)
                next_probe = now + PROBE_INTERVAL_S
            if now >= next_refresh:
                added = self._new_partitions(consumer)
                if added:
                    self._assign(consumer, sorted({*self._next_offsets, *added}))
                next_refresh = now + PARTITION_REFRESH_S
            self._publish()

    def _wait_for_partitions(self, consumer: KafkaConsumer) -> list[int]:
        topic = self.settings.topic
        while not self._stop.is_set():
            partitions = sorted(consumer.partitions_for_topic(topic))
            if partitions:
                return partitions
            self._publish(connected=True, error=f"topic {topic!r} does not exist yet (the simulator creates it)")
            log.info("waiting for topic %s to exist", topic)
            self._stop.wait(TOPIC_WAIT_S)
        return []

    def _assign(self, consumer: KafkaConsumer, partitions: list[int]) -> None:
        """Assign every partition; resume where this process left off, else read back the window."""
        topic = self.settings.topic
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        log.info("assigned partitions %s of %s (all of them: this dashboard shows the whole fleet)", partitions, topic)
        ends = consumer.end_offsets(tps, timeout_ms=PROBE_TIMEOUT_MS)
        fresh = [tp for tp in tps if tp.partition not in self._next_offsets]
        starts = self._readback_offsets(consumer, fresh, ends)
        for tp in tps:
            start = self._next_offsets.get(tp.partition, starts.get(tp))
            consumer.seek(tp, start)
            self._next_offsets[tp.partition] = start
        if fresh:  # a reconnect resumes from the positions kept above and reads nothing back
            if not self._readback_ends:
                self._readback_started = time.monotonic()
            self._readback_ends.update({tp.partition: ends[tp] for tp in fresh if starts[tp] < ends[tp]})
            self._readback_records += sum(ends[tp] - starts[tp] for tp in fresh)
            log.info(
                "reading back %d records of the last %.0f s from %d partitions",
                self._readback_records, self.settings.readback_s, len(fresh),
            )  # fmt: skip
        self._publish(connected=True, error=None, partitions=self._partition_status(ends))
        self._check_readback()

    def _readback_offsets(
        self, consumer: KafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        if not tps or self.settings.readback_s <= 0:
            return {tp: ends[tp] for tp in tps}
        since_ms = int((self._clock() - self.settings.readback_s) * 1000)
        found = consumer.offsets_for_times({tp: since_ms for tp in tps}, timeout_ms=PROBE_TIMEOUT_MS)
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}

    def _parse(self, records: dict) -> Batch:
        batch = Batch(received_at=self._clock())
        now = batch.received_at
        fixes = batch.fixes
        next_offsets = self._next_offsets
        for tp, partition_records in records.items():
            for record in partition_records:
                try:
                    fix = parse_fix(record.value, now)
                except InvalidMessage as e:
                    batch.invalid[e.reason] += 1
                    batch.dead_lettered += self._dead_letter(record, e)
                else:
                    fixes.append((fix, record.partition, record.offset))
            next_offsets[tp.partition] = partition_records[-1].offset + 1
        return batch

    def _hand_over(self, batch: Batch) -> None:
        while len(self._batches) >= QUEUE_BATCHES and not self._stop.is_set():
            self._sleep(0.01)  # the tick task is behind; Kafka keeps the records meanwhile
        self._batches.append(batch)

    def _dead_letter(self, record: ConsumerRecord, error: InvalidMessage) -> bool:
        return self.settings.dead_letter and self._dead_letters.send(record, error.reason, error.detail)

    def _probe(self, consumer: KafkaConsumer) -> None:
        """Ask for end offsets: lag for the stats, and whether Kafka answers at all."""
        tps = [TopicPartition(self.settings.topic, p) for p in self._next_offsets]
        try:
            ends = consumer.end_offsets(tps, timeout_ms=PROBE_TIMEOUT_MS)
        except KafkaError as e:
            if self.status.connected:
                log.warning("lost Kafka at %s (%s); waiting for it", self.settings.bootstrap_servers, type(e).__name__)
            self._publish(connected=False, error=f"Kafka at {self.settings.bootstrap_servers} does not answer: {e}")
            return
        if not self.status.connected:
            log.info("Kafka at %s answers again; consuming", self.settings.bootstrap_servers)
        self._publish(connected=True, error=None, partitions=self._partition_status(ends))
        self._check_readback()

    def _partition_status(self, ends: dict[TopicPartition, int]) -> tuple[PartitionStatus, ...]:
        return tuple(
            PartitionStatus(tp.partition, end, self._next_offsets.get(tp.partition))
            for tp, end in sorted(ends.items(), key=lambda item: item[0].partition)
        )

    def _check_readback(self) -> None:
        if self.status.readback_done:
            return
        if all(self._next_offsets.get(p, 0) >= end for p, end in self._readback_ends.items()):
            log.info(
                "read-back done: %d records in %.1f s", self._readback_records,
                time.monotonic() - self._readback_started,
            )  # fmt: skip
            self._publish(readback_done=True)

    def _new_partitions(self, consumer: KafkaConsumer) -> list[int]:
        known = set(self._next_offsets)
        return sorted(set(consumer.partitions_for_topic(self.settings.topic)) - known)

    def _publish(self, **changes) -> None:
        self.status = replace(self.status, heartbeat=time.monotonic(), **changes)
