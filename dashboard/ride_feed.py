"""The dashboard's ride consumer: requests and the matcher's answers, for the riders on the map.

A second green consumer beside :class:`dashboard.feed.KafkaFeed`, built the same way (every
partition by manual assignment, no group, nothing committed; batches handed to the tick task),
for two topics at once: ``ride-requests`` and ``ride-matches``. It reads with
``isolation_level='read_committed'``: the matcher writes its answers in transactions, and an
answer of an aborted transaction (a matcher killed mid-transaction) must never reach the map.

The ride topics are the matcher's: a dashboard started before any matcher works without them. It
looks for them every few seconds, logs once which ones it waits for, and reads each from the
moment it appears. At start (and when a topic appears) it reads back the last
``rides_readback_s`` seconds, so a restarted dashboard shows the riders waiting now.

Refused answers are counted and copied to ``ride-matches.dlq``. Refused requests are only
counted: the matcher copies them to ``ride-requests.dlq`` in its transactions, exactly once, and a
dashboard's copies would break that.
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
from kafka.errors import KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS, consume_until_stopped
from dashboard.feed import (
    FETCH_MAX_WAIT_MS,
    POLL_TIMEOUT_MS,
    PROBE_TIMEOUT_MS,
    QUEUE_BATCHES,
    RECONNECT_BACKOFF_MAX_MS,
    dead_letter_sink,
)
from dashboard.settings import DashboardSettings
from fleet.rides import RideMatch, RideRequest, parse_match, parse_request
from fleet.schema import InvalidMessage
from fleet.settings import bootstrap_list

log = logging.getLogger(__name__)

# Riders are few: small polls keep each turn of this green thread short.
MAX_BATCH_RECORDS = 500
FETCH_MAX_BYTES = 512 * 1024
# How often missing ride topics are looked for, and how often new partitions of present ones.
TOPIC_CHECK_S = 5.0
PARTITION_REFRESH_S = 30.0


@dataclass
class RideBatch:
    """What one poll brought: valid requests and answers, and refusals by (topic, reason)."""

    received_at: float
    requests: list[RideRequest] = field(default_factory=list)
    matches: list[RideMatch] = field(default_factory=list)
    invalid: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_lettered: int = 0


@dataclass(frozen=True)
class RideFeedStatus:
    """Replaced whole, never mutated, so the tick task reads it without a lock."""

    connected: bool = False
    error: str | None = "ride consumer not started"
    missing: tuple[str, ...] = ()  # ride topics that do not exist yet
    partitions: int = 0  # partitions assigned, both topics
    running: bool = False


class RideFeed:
    """Consumes the ride topics in :meth:`run` (a green thread); the tick task calls :meth:`drain`."""

    def __init__(
        self, settings: DashboardSettings, sleep: Callable[[float], None], clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.topics = (settings.ride_request_topic, settings.ride_match_topic)
        self.status = RideFeedStatus()
        self._sleep = sleep
        self._clock = clock
        self._batches: deque[RideBatch] = deque()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, kept across reconnects
        self.client_id = f"dashboard-rides-{socket.gethostname()}-{os.getpid()}"
        self._dead_letters = dead_letter_sink(settings.bootstrap_servers, self.client_id)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._finished.wait(timeout_s)

    def drain(self) -> list[RideBatch]:
        """The batches consumed since the previous call."""
        batches, self._batches = list(self._batches), deque()
        return batches

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting as long as it takes."""
        self._publish(running=True, error=f"Kafka at {self.settings.bootstrap_servers} is not reachable yet")
        try:
            consume_until_stopped(
                self._new_consumer, self._consume, "ride consumer", self.settings.bootstrap_servers, self._stop,
                on_failure=lambda e: self._publish(connected=False, error=f"ride consumer failed: {e}"),
            )  # fmt: skip
            self._dead_letters.close()
        finally:
            self._publish(running=False, connected=False, error="ride consumer stopped")
            self._finished.set()
        log.info("ride consumer stopped")

    def _new_consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_list(self.settings.bootstrap_servers),
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",  # never an answer of an aborted transaction
            auto_offset_reset="latest",
            allow_auto_create_topics=False,  # the ride topics are the matcher's to create, with its partitions
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_poll_records=MAX_BATCH_RECORDS,
            fetch_max_bytes=FETCH_MAX_BYTES,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
        # kafka-python 3.0.12 does not hand allow_auto_create_topics to its metadata (net/manager.py builds
        # ClusterMetadata without it), so a ride topic deleted while assigned would be created again, with
        # the broker's default partitions, by our next metadata request. Measured: recreated without this line.
        consumer._client.cluster.config["allow_auto_create_topics"] = False
        return consumer

    def _consume(self, consumer: KafkaConsumer) -> None:
        if self._positions:  # a reconnect: resume where this process left off
            self._assign(consumer, [])
        next_check = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= next_check:
                try:
                    self._look_for_partitions(consumer)
                except KafkaError as e:  # Kafka is away: kafka-python reconnects; look again later
                    if self.status.connected:
                        log.warning("ride consumer lost Kafka (%s); waiting for it", type(e).__name__)
                    self._publish(connected=False, error=f"Kafka does not answer: {e}")
                next_check = time.monotonic() + (TOPIC_CHECK_S if self.status.missing else PARTITION_REFRESH_S)
            if not self._positions:
                self._stop.wait(min(1.0, max(0.0, next_check - time.monotonic())))
                continue
            records = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH_RECORDS)
            if records:
                self._hand_over(self._parse(records))
            self._sleep(0)  # let the web server and the tick run between two polls

    def _look_for_partitions(self, consumer: KafkaConsumer) -> None:
        """Assign partitions not held yet; note which ride topics do not exist (logged once, not every check)."""
        found: list[TopicPartition] = []
        missing: list[str] = []
        for topic in self.topics:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                found += [TopicPartition(topic, p) for p in sorted(partitions)]
            else:
                missing.append(topic)
        if tuple(missing) != self.status.missing:
            if missing:
                log.info("waiting for %s to exist (the matcher creates them); riders show once they do",
                         " and ".join(missing))  # fmt: skip
            else:
                log.info("ride topics %s exist", " and ".join(self.topics))
        new = [tp for tp in found if tp not in self._positions]
        if new:
            self._assign(consumer, new)
        error = f"{' and '.join(missing)} not created yet (the matcher creates them)" if missing else None
        self._publish(connected=True, error=error, missing=tuple(missing))

    def _assign(self, consumer: KafkaConsumer, new: list[TopicPartition]) -> None:
        """Assign the partitions held and the new ones; the new ones start at the read-back window."""
        consumer.assign([*self._positions, *new])
        starts = self._readback_offsets(consumer, new)
        for tp, start in starts.items():
            self._positions[tp] = start
        for tp, position in self._positions.items():
            consumer.seek(tp, position)
        if new:
            log.info(
                "assigned %d partitions of %s; reading back the last %.0f s",
                len(new), " and ".join(sorted({tp.topic for tp in new})), self.settings.rides_readback_s,
            )  # fmt: skip
        self._publish(partitions=len(self._positions))

    def _readback_offsets(self, consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        ends = consumer.end_offsets(tps, timeout_ms=PROBE_TIMEOUT_MS)
        if self.settings.rides_readback_s <= 0:
            return {tp: ends[tp] for tp in tps}
        since_ms = int((self._clock() - self.settings.rides_readback_s) * 1000)
        found = consumer.offsets_for_times(dict.fromkeys(tps, since_ms), timeout_ms=PROBE_TIMEOUT_MS)
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}

    def _parse(self, records: dict) -> RideBatch:
        batch = RideBatch(received_at=self._clock())
        now = batch.received_at
        requests_topic = self.settings.ride_request_topic
        for tp, partition_records in records.items():
            is_request = tp.topic == requests_topic
            for record in partition_records:
                try:
                    if is_request:
                        batch.requests.append(parse_request(record.value, now))
                    else:
                        batch.matches.append(parse_match(record.value, now))
                except InvalidMessage as e:
                    batch.invalid[(tp.topic, e.reason)] += 1
                    if not is_request and self.settings.dead_letter:
                        batch.dead_lettered += self._dead_letters.send(record, e.reason, e.detail)
            self._positions[tp] = partition_records[-1].offset + 1
        return batch

    def _hand_over(self, batch: RideBatch) -> None:
        while len(self._batches) >= QUEUE_BATCHES and not self._stop.is_set():
            self._sleep(0.01)  # the tick task is behind; Kafka keeps the records meanwhile
        self._batches.append(batch)

    def _publish(self, **changes) -> None:
        self.status = replace(self.status, **changes)
