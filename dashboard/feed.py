"""The dashboard's Kafka consumers: every partition of some topics, no consumer group, one green thread each.

Each dashboard instance shows the whole fleet, so a :class:`Feed` assigns itself every partition of
its topics (no group id, nothing committed, no rebalances with other instances). A dashboard runs
two: the driver feed (``driver-location``) and the ride feed (``ride-requests`` and ``ride-matches``,
read ``read_committed`` so an answer of an aborted matcher transaction never reaches the map). On
start, and when a topic or partition appears, a feed seeks to the first record of the last
``readback_s`` seconds (``offsets_for_times``), so a restarted dashboard shows the fleet at once.

Every poll goes through :func:`bus.intake.take`: each record is decoded by its topic's total
decoder (:mod:`fleet.decode`), the messages are applied by the dashboard in one batch, and a
refused record is counted by (topic, reason), logged at most once a minute per reason and copied
to ``<topic>.dlq`` by a :class:`bus.deadletter.DeadLetterSink` that never makes the feed wait. The
position moves past a record before it is applied: no record is ever read twice in a loop.

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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS, RECONNECT_BACKOFF_MAX_MS, consume_until_stopped
from bus.deadletter import DeadLetterSink, DeadLetterStats
from bus.intake import Record, Refusals, take
from bus.lean_fetch import lean_consumer
from fleet.decode import Decoder, Refusal
from fleet.settings import bootstrap_list

log = logging.getLogger(__name__)

# The broker answers a fetch once it holds fetch_min_bytes for it, or after fetch_max_wait_ms. With
# kafka-python's 1 byte a record is answered the moment it is written, so the wait only bounds how often a feed
# with nothing to read asks again: kafka-python spends ~1.2 ms of CPU on each fetch round, idle or not (measured:
# a bare consumer, no eventlet, 2.5 % of a core at one round per 50 ms). A feed that sets fetch_min_bytes (the
# driver feed) sets its own, smaller, wait: there it is latency.
FETCH_MAX_WAIT_MS = 500
# How long a poll waits for records: a feed's loop turns (probes, status) at least this often. Each turn costs
# kafka-python ~0.5 ms, so not more often than needed; Dashboard.stop asks all feeds to stop at once.
POLL_TIMEOUT_MS = 500
# How often end offsets are asked for: lag for the stats, and the proof that Kafka still answers.
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_MS = 2000
# How often missing topics are looked for, and new partitions of present ones.
TOPIC_CHECK_S = 5.0
PARTITION_REFRESH_S = 30.0

# (message, record) pairs of one partition's poll, applied by the dashboard in one go.
Applier = Callable[[list[tuple[Any, Record]], float], None]


@dataclass(frozen=True)
class FeedSpec:
    """What a feed reads and how: its topics with their decoders and appliers, and its fetch sizes."""

    name: str  # "driver consumer": logs, health
    decoders: dict[str, Decoder]
    appliers: dict[str, Applier]
    readback_s: float
    # The driver topic must exist for the map to mean anything; the ride topics are the matcher's, optional.
    required: bool
    missing_hint: str  # why a topic may not exist yet: "(the simulator creates it)"
    dead_letter_topics: frozenset[str]
    read_committed: bool = False
    # A table kept whole (the compacted zones topic): read every partition from its first offset, not readback_s.
    from_beginning: bool = False
    max_poll_records: int = 1000
    fetch_max_bytes: int = 1024 * 1024
    max_partition_fetch_bytes: int = 256 * 1024
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
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
    """A feed as the other green threads see it; replaced whole, never mutated, so reading it needs no lock."""

    connected: bool = False
    error: str | None = "consumer not started"
    partitions: tuple[PartitionStatus, ...] = ()
    missing: tuple[str, ...] = ()  # topics that do not exist yet
    readback_done: bool = False
    heartbeat: float = field(default_factory=time.monotonic)  # the consumer loop's last turn
    running: bool = False

    @property
    def lag(self) -> int | None:
        lags = [p.lag for p in self.partitions if p.lag is not None]
        return sum(lags) if lags else None


class Feed:
    """Consumes a :class:`FeedSpec`'s topics in :meth:`run` (a green thread) until :meth:`stop`."""

    def __init__(
        self,
        spec: FeedSpec,
        bootstrap: str,
        dead_letter: bool,
        sleep: Callable[[float], None],
        clock: Callable[[], float] = time.time,
        client_id: str | None = None,
    ) -> None:
        self.spec = spec
        self.bootstrap = bootstrap
        self.status = FeedStatus()
        self.client_id = client_id or f"dashboard-{spec.name.split()[0]}-{socket.gethostname()}-{os.getpid()}"
        self._dead_letter = dead_letter
        self._sleep = sleep
        self._clock = clock
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, kept across reconnects
        self._readback_ends: dict[TopicPartition, int] = {}
        self._readback_started = time.monotonic()
        self.refusals = Refusals(spec.name)
        self._dead_letters = DeadLetterSink(bootstrap, client_id=self.client_id + "-dlq")

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.spec.decoders)

    @property
    def dead_letters(self) -> DeadLetterStats:
        return self._dead_letters.stats

    def ask_to_stop(self) -> None:
        """Ask the consumer to finish (it does within a poll); :meth:`stop` waits for it."""
        self._stop.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the consumer to finish and wait for it to close its clients."""
        self._stop.set()
        self._finished.wait(timeout_s)

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting as long as it takes."""
        self._publish(running=True, error=f"Kafka at {self.bootstrap} is not reachable yet")
        try:
            consume_until_stopped(
                self._new_consumer,
                self._consume,
                self.spec.name,
                self.bootstrap,
                self._stop,
                on_failure=lambda e: self._publish(connected=False, error=f"consumer failed: {type(e).__name__}: {e}"),
            )
            self._dead_letters.close()
        finally:
            self._publish(running=False, connected=False, error="consumer stopped")
            self._finished.set()
        log.info("%s stopped", self.spec.name)

    def _new_consumer(self) -> KafkaConsumer:
        spec = self.spec
        consumer = lean_consumer(
            bootstrap_servers=bootstrap_list(self.bootstrap),
            client_id=self.client_id,
            group_id=None,  # every instance reads every partition and commits nothing
            enable_auto_commit=False,
            isolation_level="read_committed" if spec.read_committed else "read_uncommitted",
            auto_offset_reset="latest",
            allow_auto_create_topics=False,  # topics are the producers' to create, with their partitions
            fetch_max_wait_ms=spec.fetch_max_wait_ms,
            fetch_min_bytes=spec.fetch_min_bytes,
            max_poll_records=spec.max_poll_records,
            fetch_max_bytes=spec.fetch_max_bytes,
            max_partition_fetch_bytes=spec.max_partition_fetch_bytes,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
        # kafka-python 3.0.12 does not hand allow_auto_create_topics to its metadata (net/manager.py builds
        # ClusterMetadata without it), so a topic deleted while assigned would be created again, with the
        # broker's default partitions, by our next metadata request. Measured: recreated without this line.
        consumer._client.cluster.config["allow_auto_create_topics"] = False
        return consumer

    def _consume(self, consumer: KafkaConsumer) -> None:
        if self._positions:  # a reconnect: resume where this process left off
            self._assign(consumer, [])
        next_check = next_probe = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_check:
                self._look_for_partitions(consumer)
                next_check = now + (TOPIC_CHECK_S if self.status.missing else PARTITION_REFRESH_S)
            if not self._positions:
                self._publish()
                self._stop.wait(min(1.0, max(0.0, next_check - time.monotonic())))
                continue
            records = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=self.spec.max_poll_records)
            if records:
                self._take(records)
            self._sleep(0)  # let the web server and the tick run between two polls
            if time.monotonic() >= next_probe:
                self._probe(consumer)
                self.refusals.flush()
                next_probe = time.monotonic() + PROBE_INTERVAL_S
            self._publish()

    def _look_for_partitions(self, consumer: KafkaConsumer) -> None:
        """Assign partitions not held yet; note which topics do not exist (logged once, not every check)."""
        found: list[TopicPartition] = []
        missing: list[str] = []
        try:
            for topic in self.topics:
                partitions = consumer.partitions_for_topic(topic)
                if partitions:
                    found += [TopicPartition(topic, p) for p in sorted(partitions)]
                else:
                    missing.append(topic)
        except KafkaError as e:  # Kafka is away: kafka-python reconnects; look again later
            self._lost(e)
            return
        if tuple(missing) != self.status.missing:
            if missing:
                log.info(
                    "%s: waiting for %s to exist %s", self.spec.name, " and ".join(missing), self.spec.missing_hint
                )
            elif self.status.missing:
                log.info("%s: %s exist now", self.spec.name, " and ".join(self.status.missing))
        new = [tp for tp in found if tp not in self._positions]
        if new:
            self._assign(consumer, new)
        self._publish(connected=True, error=self._missing_error(tuple(missing)), missing=tuple(missing))

    def _missing_error(self, missing: tuple[str, ...]) -> str | None:
        return f"{' and '.join(missing)} not created yet {self.spec.missing_hint}" if missing else None

    def _assign(self, consumer: KafkaConsumer, new: list[TopicPartition]) -> None:
        """Assign the partitions held and the new ones; the new ones start at the read-back window."""
        consumer.assign([*self._positions, *new])
        starts, ends = self._readback_offsets(consumer, new)
        self._positions.update(starts)
        for tp, position in self._positions.items():
            consumer.seek(tp, position)
        if new:
            if not self._readback_ends:
                self._readback_started = time.monotonic()
            self._readback_ends.update({tp: ends[tp] for tp in new if starts[tp] < ends[tp]})
            log.info(
                "%s: assigned %d partitions of %s (all of them: every dashboard shows everything); "
                "reading back %d records %s",
                self.spec.name,
                len(new),
                " and ".join(sorted({tp.topic for tp in new})),
                sum(ends[tp] - starts[tp] for tp in new),
                "from the beginning" if self.spec.from_beginning else f"of the last {self.spec.readback_s:.0f} s",
            )
        self._publish(partitions=self._partition_status(ends))
        self._check_readback()

    def _readback_offsets(
        self, consumer: KafkaConsumer, tps: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(where each partition starts, its end now)."""
        if not tps:
            return {}, {}
        ends = consumer.end_offsets(tps, timeout_ms=PROBE_TIMEOUT_MS)
        if self.spec.from_beginning:
            return dict(consumer.beginning_offsets(tps, timeout_ms=PROBE_TIMEOUT_MS)), ends
        if self.spec.readback_s <= 0:
            return dict(ends), ends
        since_ms = int((self._clock() - self.spec.readback_s) * 1000)
        found = consumer.offsets_for_times(dict.fromkeys(tps, since_ms), timeout_ms=PROBE_TIMEOUT_MS)
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}, ends

    def _take(self, records: dict[TopicPartition, list]) -> None:
        now = self._clock()
        for tp, partition_records in records.items():
            # Past these records before anything is done with them: whatever happens, none is read again.
            self._positions[tp] = partition_records[-1].offset + 1
            applier = self.spec.appliers[tp.topic]

            def apply(items: list[tuple[Any, Record]], applier: Applier = applier) -> None:
                applier(items, now)

            take(partition_records, self.spec.decoders[tp.topic], now, apply, self._refuse)

    def _refuse(self, record: Record, refusal: Refusal) -> None:
        self.refusals.note(record, refusal)
        if self._dead_letter and record.topic in self.spec.dead_letter_topics:
            self._dead_letters.send(record, refusal)

    def _probe(self, consumer: KafkaConsumer) -> None:
        """Ask for end offsets: lag for the stats, and whether Kafka answers at all."""
        try:
            for tp in self._positions:  # past control records too (read_committed)
                self._positions[tp] = consumer.position(tp, timeout_ms=PROBE_TIMEOUT_MS)
            ends = consumer.end_offsets(list(self._positions), timeout_ms=PROBE_TIMEOUT_MS)
        except KafkaError as e:
            self._lost(e)
            return
        if not self.status.connected:
            log.info("%s: Kafka at %s answers again; consuming", self.spec.name, self.bootstrap)
        # An answer clears the error of a probe that failed (a leader that died): only a missing topic stays.
        self._publish(
            connected=True, error=self._missing_error(self.status.missing), partitions=self._partition_status(ends)
        )
        self._check_readback()

    def _lost(self, error: KafkaError) -> None:
        if self.status.connected:
            log.warning(
                "%s lost Kafka at %s (%s); waiting for it", self.spec.name, self.bootstrap, type(error).__name__
            )
        self._publish(connected=False, error=f"Kafka at {self.bootstrap} does not answer: {error}")

    def _partition_status(self, ends: dict[TopicPartition, int]) -> tuple[PartitionStatus, ...]:
        return tuple(
            PartitionStatus(tp.topic, tp.partition, end, self._positions.get(tp))
            for tp, end in sorted(ends.items(), key=lambda item: (item[0].topic, item[0].partition))
        )

    def _check_readback(self) -> None:
        if self.status.readback_done or not self._positions:
            return
        if all(self._positions.get(tp, 0) >= end for tp, end in self._readback_ends.items()):
            log.info("%s: read-back done in %.1f s", self.spec.name, time.monotonic() - self._readback_started)
            self._publish(readback_done=True)

    def _publish(self, **changes: Any) -> None:
        self.status = replace(self.status, heartbeat=time.monotonic(), **changes)
