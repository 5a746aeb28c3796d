"""Reading the past back from Kafka for one request: a driver's track, or the fleet at a moment.

The I/O shell of :mod:`fleet.track`. Each read has a short-lived ``KafkaConsumer`` of its own: manual
assignment, no group, nothing committed (no other consumer notices it), ``read_uncommitted`` (fixes are
not written in transactions). A track reads only the driver's partition, found from its key the way the
producer's default partitioner found it (murmur2), from the offset ``offsets_for_times`` gives for the
window's start minus :data:`SEEK_MARGIN_S`, until :data:`PAST_END_RECORDS` of its records in a row are
stamped after the window's end plus the margin (or the partition's end as the read started); the other
keys' records are skipped without being built (:mod:`bus.lean_fetch`). Kafka seeks by the record's
timestamp (the producer's CreateTime) while a track is about the fix's own ``timestamp``: the margin lets a
fix sent a little late, or by a producer whose clock is a little off, still be found; the fix's own
timestamp then decides (docs/api.md, "Driver tracks and shared maps").

Bounded: at most ``DASHBOARD_TRACK_READS`` reads at once (the next is refused, :class:`ReadsBusy`), each
stopping at its end offsets, after :data:`READ_DEADLINE_S`, after :data:`MAX_SCAN_RECORDS` records, or
once :data:`fleet.track.MAX_POINTS` points are found. Never blocking eventlet's hub: kafka-python's sockets
are green under monkey patching (dashboard/asyncmode.py), polls are small, and the loop yields after each.
Every record passes the shared decoder (``fleet.decode.FIXES``); one it refuses is skipped and counted.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS
from bus.lean_fetch import only_key
from bus.partitioning import key_partition
from fleet import decode
from fleet.decode import Refusal
from fleet.errors import FleetError
from fleet.schema import BAD_DRIVER_ID, Fix, InvalidMessage, validate_id
from fleet.settings import bootstrap_list
from fleet.track import Track, TrackBuilder, Window

log = logging.getLogger(__name__)

# How far the records' Kafka timestamps (CreateTime) may stray from the fixes' own before a fix is missed:
# a simulator behind by seconds, a phone that sent a minute of fixes at once, NTP-synchronised hosts.
SEEK_MARGIN_S = 60.0
# A read that has not reached its end by then returns what it found (stopped "time"): an hour of one
# partition of a 1,000-driver fleet on 6 partitions is ~620,000 records, read in ~1 s (docs/benchmarks.md).
READ_DEADLINE_S = 15.0
# A partition is done after this many records in a row stamped after the window's end (plus the margin), of
# the driver for a track (only its records reach the scan), of anyone for the fleet: one record stamped late by
# a wrong clock does not end the read, the records of the next seconds (a track: next minutes) do.
PAST_END_RECORDS = 100
# Records looked at, at most (all of them, whatever their key): a day of a busy partition is more.
MAX_SCAN_RECORDS = 5_000_000
# Small polls: the other green threads (ticks, requests) run between two of them (~10 ms of decoding each).
POLL_RECORDS = 2000
POLL_TIMEOUT_MS = 200
KAFKA_TIMEOUT_MS = 5000
# Bigger fetches than the live feed's: a read is a backlog by nature, and fewer round trips are faster.
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
# The fleet at a moment: each driver's last fix at most this long before it (the map's stale window is 30 s).
FLEET_LOOKBACK_S = 60.0
MAX_FLEET_DRIVERS = 100_000


class ReadsBusy(FleetError):
    """As many reads as allowed are under way: the caller should ask again in a moment (HTTP 429)."""


class ReadUnavailable(FleetError):
    """Kafka did not answer the read, or the topic does not exist (HTTP 503)."""


@dataclass(frozen=True)
class ScanPlan:
    """What to read: ``topic``'s records timestamped from ``since_ms`` to ``until_ms`` (Kafka's record time),
    only those keyed ``key`` and only on its partition, or with ``key`` None every record of every partition."""

    topic: str
    key: bytes | None
    since_ms: int
    until_ms: int
    max_records: int = MAX_SCAN_RECORDS
    deadline_s: float = READ_DEADLINE_S


@dataclass
class ScanResult:
    """How a scan went: the partitions read, records looked at, and why it stopped early (None: it did not)."""

    partitions: list[int] = field(default_factory=list)
    records: int = 0
    stopped: str | None = None  # "cap" (the caller had enough), "records" or "time"
    seconds: float = 0.0


# take(record) -> False once the caller wants no more records.
Take = Callable[[Any], bool]
Scan = Callable[[str, ScanPlan, Take, Callable[[float], None]], ScanResult]


def driver_id_from_path(text: str) -> str:
    """A driver id asked for in a path, checked as the fixes' ``driver_id`` is; ValueError saying why not."""
    try:
        return validate_id(text, BAD_DRIVER_ID, "the driver id")
    except InvalidMessage as e:
        raise ValueError(e.detail) from None


def scan_kafka(bootstrap: str, plan: ScanPlan, take: Take, sleep: Callable[[float], None]) -> ScanResult:
    """Read ``plan`` with a consumer of its own, handing each record to ``take``; ReadUnavailable if Kafka fails."""
    started = time.monotonic()
    try:
        consumer = _consumer(bootstrap)
    except KafkaError as e:
        raise ReadUnavailable(f"Kafka at {bootstrap} is not reachable ({type(e).__name__}); try again") from e
    if plan.key is not None:
        only_key(consumer, plan.key)  # the other keys' records are skipped unbuilt: twice as fast
    try:
        result = _scan(consumer, plan, take, sleep, started)
    except KafkaError as e:
        raise ReadUnavailable(f"Kafka at {bootstrap} did not answer the read ({type(e).__name__}); try again") from e
    finally:
        consumer.close(autocommit=False)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _consumer(bootstrap: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_list(bootstrap),
        client_id=f"dashboard-track-{socket.gethostname()}-{os.getpid()}",
        group_id=None,  # no group: nothing committed, no other consumer's partitions move
        enable_auto_commit=False,
        isolation_level="read_uncommitted",  # fixes are not written in transactions
        auto_offset_reset="earliest",  # a start deleted by retention meanwhile: the oldest record left
        allow_auto_create_topics=False,
        max_poll_records=POLL_RECORDS,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=2 * MAX_PARTITION_FETCH_BYTES,
        reconnect_backoff_max_ms=1000,
        request_timeout_ms=KAFKA_TIMEOUT_MS + 1000,
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
    )
    # As in dashboard/feed.py: kafka-python 3.0.12 does not hand this to its metadata requests, so asking for
    # the partitions of a missing topic would create it.
    consumer._client.cluster.config["allow_auto_create_topics"] = False
    return consumer


def _scan(
    consumer: KafkaConsumer, plan: ScanPlan, take: Take, sleep: Callable[[float], None], started: float
) -> ScanResult:
    partitions = consumer.partitions_for_topic(plan.topic)
    if not partitions:
        raise ReadUnavailable(f"the topic {plan.topic} does not exist (yet)")
    chosen = sorted(partitions) if plan.key is None else [key_partition(plan.key, len(partitions))]
    result = ScanResult(partitions=chosen)
    ranges = _offset_range(consumer, [TopicPartition(plan.topic, p) for p in chosen], plan)
    stops = {tp: stop for tp, (_, stop) in ranges.items()}
    scanned = dict.fromkeys(ranges, 0)  # records looked at (all keys), per partition
    past_end = dict.fromkeys(ranges, 0)  # records in a row stamped after the window, per partition
    while stops:
        if time.monotonic() - started > plan.deadline_s:
            result.stopped = "time"
            break
        for tp, records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=POLL_RECORDS).items():
            if tp not in stops:
                continue  # done already (fetched before it was paused)
            for record in records:
                past_end[tp] = past_end[tp] + 1 if record.timestamp >= plan.until_ms else 0
                if record.offset >= stops[tp] or past_end[tp] >= PAST_END_RECORDS:
                    stops[tp] = record.offset  # done with this partition
                    break
                if (plan.key is None or record.key == plan.key) and not take(record):
                    scanned[tp] = record.offset + 1 - ranges[tp][0]
                    result.stopped = "cap"
                    result.records = sum(scanned.values())
                    return result
        for tp, stop in stops.items():
            scanned[tp] = min(consumer.position(tp, timeout_ms=KAFKA_TIMEOUT_MS), stop) - ranges[tp][0]
        result.records = sum(scanned.values())
        _drop_finished(consumer, stops)
        if result.records >= plan.max_records:
            result.stopped = "records"
            break
        sleep(0)  # let the ticks and the other requests run between two polls
    return result


def _offset_range(
    consumer: KafkaConsumer, tps: list[TopicPartition], plan: ScanPlan
) -> dict[TopicPartition, tuple[int, int]]:
    """Seek each partition to its first record stamped ``since_ms`` or later; return (that offset, its end offset
    now, where the read stops at the latest). Partitions with nothing to read are left out.

    Not ``offsets_for_times(until_ms)`` for the end: Kafka answers with the first record *in offset order* stamped
    that late, so one record stamped ahead by a producer with a wrong clock would end the read there, before
    the honest records written after it. The read stops instead after :data:`PAST_END_RECORDS` in a row.
    """
    firsts = consumer.offsets_for_times(dict.fromkeys(tps, plan.since_ms), timeout_ms=KAFKA_TIMEOUT_MS)
    ends = consumer.end_offsets(tps, timeout_ms=KAFKA_TIMEOUT_MS)
    ranges = {tp: (found.offset, ends[tp]) for tp in tps if (found := firsts.get(tp)) is not None}
    ranges = {tp: (start, stop) for tp, (start, stop) in ranges.items() if start < stop}
    consumer.assign(list(ranges))
    for tp, (start, _) in ranges.items():
        consumer.seek(tp, start)
    return ranges


def _drop_finished(consumer: KafkaConsumer, stops: dict[TopicPartition, int]) -> None:
    """Stop reading partitions whose position reached their stop (past a gap or a marker too)."""
    done = [tp for tp, stop in stops.items() if consumer.position(tp, timeout_ms=KAFKA_TIMEOUT_MS) >= stop]
    if done:
        consumer.pause(*done)
        for tp in done:
            del stops[tp]


@dataclass
class ReadReport:
    """A read's figures for the answer: where it read, how much, how long, what it skipped and why it stopped."""

    scan: ScanResult
    skipped: Counter[str]

    def json(self) -> dict[str, Any]:
        return {
            "partitions": self.scan.partitions,
            "records": self.scan.records,
            "seconds": self.scan.seconds,
            "skipped": dict(sorted(self.skipped.items())),
            "stopped": self.scan.stopped,
        }


class TrackReads:
    """The dashboard's reads of the past: at most ``limit`` at once, each with a consumer of its own."""

    def __init__(self, bootstrap: str, topic: str, limit: int, sleep: Callable[[float], None]) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.limit = limit
        self.active = 0
        self.scan: Scan = scan_kafka  # tests hand in a scan without Kafka
        self._sleep = sleep

    @contextmanager
    def _slot(self) -> Iterator[None]:
        # Green threads switch only where they wait, never between this check and the increment.
        if self.active >= self.limit:
            raise ReadsBusy(f"{self.limit} reads of the past are under way already (DASHBOARD_TRACK_READS); try again")
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    def track(self, driver_id: str, window: Window) -> tuple[Track, ReadReport]:
        """``driver_id``'s fixes in ``window`` (by their own timestamps), read back from its partition."""
        builder = TrackBuilder(driver_id, window)
        skipped: Counter[str] = Counter()
        plan = ScanPlan(self.topic, driver_id.encode("utf-8"), *_margins(window.start, window.end))

        def take(record: Any) -> bool:
            fix = decode.FIXES(record.key, record.value, time.time())
            if isinstance(fix, Refusal):
                skipped[fix.reason] += 1
                return True
            return builder.add(fix)

        with self._slot():
            scan = self.scan(self.bootstrap, plan, take, self._sleep)
        return builder.build(), ReadReport(scan, skipped)

    def fleet_at(self, at: float) -> tuple[list[Fix], ReadReport]:
        """Each driver's last fix taken at or before ``at`` (and at most :data:`FLEET_LOOKBACK_S` before)."""
        latest: dict[str, Fix] = {}
        skipped: Counter[str] = Counter()
        plan = ScanPlan(self.topic, None, *_margins(at - FLEET_LOOKBACK_S, at))

        def take(record: Any) -> bool:
            fix = decode.FIXES(record.key, record.value, time.time())
            if isinstance(fix, Refusal):
                skipped[fix.reason] += 1
            elif at - FLEET_LOOKBACK_S <= fix.timestamp <= at:
                held = latest.get(fix.driver_id)
                if held is None or fix.timestamp >= held.timestamp:
                    latest[fix.driver_id] = fix
            return len(latest) < MAX_FLEET_DRIVERS

        with self._slot():
            scan = self.scan(self.bootstrap, plan, take, self._sleep)
        return list(latest.values()), ReadReport(scan, skipped)


def _margins(start: float, end: float) -> tuple[int, int]:
    """Kafka record times (ms) to read for fixes taken from ``start`` to ``end``: :data:`SEEK_MARGIN_S` either side."""
    return max(0, int((start - SEEK_MARGIN_S) * 1000)), int((end + SEEK_MARGIN_S) * 1000)


def newest(fixes: list[Any], count: int) -> list[Any]:
    """The ``count`` fixes (or drivers) with the newest timestamps."""
    return heapq.nlargest(count, fixes, key=lambda fix: fix.timestamp)
