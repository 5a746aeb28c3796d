"""The zone processor: drivers' fixes in, enter / exit / dwell events out, exactly once.

One thread, four clients, in the way of the matcher (``matcher/service.py``) and of a Kafka Streams task:

- a *fix* consumer in group ``zones`` reads this instance's partitions of ``driver-location``
  (driver-keyed: one driver's fixes are in one partition, so one instance holds its state);
- a *zones* consumer (no group) reads the compacted ``zones`` topic from its beginning into a
  :class:`fleet.zones.ZoneTable`, up to its end before the first fix is looked at, then as it changes;
- a *state* consumer (no group, read_committed) restores the assigned partitions' drivers from the
  compacted changelog ``zones-state``: partition *p* of the changelog holds the drivers of partition *p*
  of ``driver-location`` (same partition count; the processor writes each record to that partition);
- a *transactional* producer writes, per transaction, the events to ``zone-events``, the changed drivers to
  ``zones-state`` (a tombstone once a driver is in no zone), refused records to their ``.dlq``, and the
  fix offsets (``send_offsets_to_transaction``). All of it is committed together or not at all.

After a start, an assignment or an aborted transaction the processor *restores* before it looks at a fix:
it reads the committed offsets (stable), reads the changelog partitions up to their last stable offset, and
the zones up to their end; only then are the fix partitions resumed, from the committed offsets. The state
then is exactly the one those offsets were committed with, so no event is lost or repeated (a restored
driver in a zone that is gone meanwhile gets its exit then).

Invalid zones are dead-lettered to ``zones.dlq`` by the one instance that holds partition 0 of
``driver-location``, in its transactions, with the ``zones`` offset committed beside the fix offsets (in
group ``zones``): each invalid zone is copied once, whatever the restarts and however many instances read
``zones``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import IO, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from bus import transactions
from bus.clients import (
    BOOTSTRAP_TIMEOUT_MS,
    RECONNECT_BACKOFF_MAX_MS,
    ForwardRebalance,
    close_producer,
    connect,
    ensure_topics,
    opened,
)
from bus.deadletter import ensure_dead_letter_topic, send_dead_letter
from bus.intake import Record, Refusals, take
from bus.lean_fetch import lean_consumer
from bus.runtime import claim_instance
from fleet import decode
from fleet.decode import Refusal
from fleet.errors import FleetError
from fleet.schema import Fix
from fleet.settings import bootstrap_list
from fleet.zone_tracker import ZoneTracker
from fleet.zones import InvalidZone, Zone, ZoneDeleted, ZoneEvent, ZoneTable, encode_event
from zones.settings import ZonesSettings

log = logging.getLogger(__name__)

POLL_MS = 20
FIX_MAX_RECORDS = 2000
ZONE_MAX_RECORDS = 500
STATE_MAX_RECORDS = 5000
SESSION_TIMEOUT_MS = 10_000
ERROR_LOG_INTERVAL_S = 60.0
# Invalid zones remembered until the instance that copies them to zones.dlq has done so.
MAX_ZONE_REFUSALS = 1000
RESTORE_SLOW_S = 5.0
COMPACT = {"cleanup.policy": "compact"}


class FatalError(FleetError):
    """The processor cannot go on (another instance runs with its id, topics that do not fit)."""


class Phase(Enum):
    RESTORE_WANTED = "restore wanted"
    RESTORING = "restoring"
    RUNNING = "running"
    FENCED = "fenced"


@dataclass
class Counts:
    """What the processor did since it started; the log line shows the difference over its interval."""

    fixes: int = 0
    refused: int = 0
    enters: int = 0
    exits: int = 0
    dwells: int = 0
    dead_letters: int = 0
    dead_letter_failures: int = 0
    state_records: int = 0
    transactions: int = 0
    commit_s: float = 0.0
    aborts: int = 0
    restores: int = 0

    @property
    def events(self) -> int:
        return self.enters + self.exits + self.dwells

    def minus(self, earlier: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})


class ZonesService:
    def __init__(self, config: ZonesSettings, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.table = ZoneTable(config.max_zones)
        self.trackers: dict[int, ZoneTracker] = {}  # the partitions being processed
        self.phase = Phase.RESTORE_WANTED
        self.fenced_reason = ""
        self.in_transaction = False
        self.counts = Counts()
        self._logged = Counts()
        self.refusals = Refusals("zone processor")
        self.errors = 0
        self._error_logged = 0.0
        self._admin: KafkaAdminClient | None = None
        self._producer: KafkaProducer | None = None
        self._fixes: KafkaConsumer | None = None
        self._zones: KafkaConsumer | None = None
        self._state: KafkaConsumer | None = None
        self.instance_lock: IO[str] | None = None
        self.zones_tp = TopicPartition(config.zones_topic, 0)
        # Restore under way: trackers being filled, the changelog offsets to reach, the zones offset to reach.
        self._restoring: dict[int, ZoneTracker] = {}
        self._restore_targets: dict[TopicPartition, int] = {}
        self._zones_target = 0
        self._committed: dict[TopicPartition, int | None] = {}  # committed offsets of the partitions restored
        self._restore_started = 0.0
        self._restore_warned = 0.0
        # Invalid zones read, and from which offset of zones they are still to be dead-lettered (by the
        # instance holding partition 0 of driver-location; None: not this one).
        self.zone_refusals: deque[tuple[Record, Refusal]] = deque(maxlen=MAX_ZONE_REFUSALS)
        self.zones_dlq_from: int | None = None
        self._last_offsets: dict[TopicPartition, OffsetAndMetadata] = {}

    # ---- life cycle

    def run(self) -> int:
        config = self.config
        self.instance_lock = claim_instance("zones", config.transactional_id)
        log.info(
            "zone processor %s starting: fixes from %s (group %s), zones from %s, events to %s, changelog %s",
            config.instance,
            config.driver_topic,
            config.group_id,
            config.zones_topic,
            config.events_topic,
            config.state_topic,
        )
        try:
            if connect(self.start_up, "zone processor", config.bootstrap_servers, self.stop) is None:
                return 0
            interval_start = next_commit = time.monotonic()
            next_log = interval_start + config.log_interval_s
            while not self.stop.is_set():
                self.step()
                if self.phase is Phase.FENCED:
                    raise FatalError(self.fenced_reason)
                clock = time.monotonic()
                if clock >= next_commit:
                    self.commit()
                    next_commit = clock + config.commit_interval_s
                if clock >= next_log:
                    self.log_stats(clock - interval_start)
                    interval_start, next_log = clock, clock + config.log_interval_s
            self.commit()
        except FatalError as e:
            log.error("%s", e)
            return 1
        finally:
            self.close()
        log.info("zone processor %s stopped", config.instance)
        return 0

    def start_up(self) -> ZonesService:
        """Topics, clients, the zone table read to its end; on a Kafka error, closes what it opened and raises."""
        config = self.config
        servers = bootstrap_list(config.bootstrap_servers)
        common: dict[str, Any] = {
            "bootstrap_servers": servers,
            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        }
        try:
            self._admin = KafkaAdminClient(**common)
            ensure_topics(self._admin, {config.driver_topic: config.partitions, config.events_topic: config.partitions})
            ensure_topics(self._admin, {config.zones_topic: 1}, COMPACT)
            ensure_dead_letter_topic(self._admin, config.driver_topic)
            ensure_dead_letter_topic(self._admin, config.zones_topic)
            self._zones = lean_consumer(enable_auto_commit=False, max_poll_records=ZONE_MAX_RECORDS, **common)
            zone_partitions = self.partition_count(self._zones, config.zones_topic)
            if zone_partitions != 1:
                raise FatalError(
                    f"{config.zones_topic} has {zone_partitions} partitions; the zone table is one compacted partition "
                    "(recreate it with one, or name another with --zones-topic)"
                )
            partitions = self.partition_count(self._zones, config.driver_topic)
            ensure_topics(self._admin, {config.state_topic: partitions}, COMPACT)
            state_partitions = self.partition_count(self._zones, config.state_topic)
            if state_partitions != partitions:
                raise FatalError(
                    f"{config.state_topic} has {state_partitions} partitions and {config.driver_topic} {partitions}: "
                    "the changelog needs as many (delete it, or name another with --state-topic)"
                )
            self._producer = self.open_producer()
            self._state = lean_consumer(
                isolation_level="read_committed",
                enable_auto_commit=False,
                max_poll_records=STATE_MAX_RECORDS,
                **common,
            )
            self._fixes = lean_consumer(
                group_id=config.group_id,
                group_instance_id=config.instance,
                isolation_level="read_committed",
                enable_auto_commit=False,
                auto_offset_reset="latest",
                session_timeout_ms=SESSION_TIMEOUT_MS,
                max_poll_records=FIX_MAX_RECORDS,
                **common,
            )
            self.read_zones_to_end()
        except KafkaError:
            self.close_clients()
            raise
        self.fixes.subscribe([config.driver_topic], listener=ForwardRebalance(self))
        return self

    def open_producer(self) -> KafkaProducer:
        return transactions.open_producer(self.config.bootstrap_servers, self.config.transactional_id)

    def read_zones_to_end(self) -> None:
        """The whole zone table before any fix: a driver's state names zones that must be known."""
        self.zones.assign([self.zones_tp])
        self.zones.seek_to_beginning(self.zones_tp)
        end = self.zones.end_offsets([self.zones_tp])[self.zones_tp]
        started = time.monotonic()
        while self.zones.position(self.zones_tp) < end and not self.stop.is_set():
            self.poll_zones(timeout_ms=100)
        log.info(
            "read %d zones from %s in %.2f s (%d refused)",
            len(self.table),
            self.config.zones_topic,
            time.monotonic() - started,
            len(self.zone_refusals),
        )

    def close(self) -> None:
        if self.instance_lock is not None:
            self.instance_lock.close()
        self.close_clients()

    def close_clients(self) -> None:
        for client in (self._fixes, self._zones, self._state):
            if client is not None:
                client.close()
        if self._producer is not None:
            close_producer(self._producer, 5, "the zone processor's producer")
        if self._admin is not None:
            self._admin.close()
        self._fixes = self._zones = self._state = self._producer = self._admin = None

    @property
    def producer(self) -> KafkaProducer:
        return opened(self._producer, "zone processor's producer")

    @property
    def fixes(self) -> KafkaConsumer:
        return opened(self._fixes, "zone processor's fix consumer")

    @property
    def zones(self) -> KafkaConsumer:
        return opened(self._zones, "zone processor's zones consumer")

    @property
    def state(self) -> KafkaConsumer:
        return opened(self._state, "zone processor's state consumer")

    # ---- one turn of the loop

    def step(self) -> None:
        try:
            self.poll_zones(timeout_ms=0)
            if self.phase is Phase.RESTORE_WANTED:
                self.begin_restore()
            if self.phase is Phase.RESTORING:
                self.continue_restore()
            batch = self.fixes.poll(timeout_ms=POLL_MS, max_records=FIX_MAX_RECORDS)
            if self.phase is Phase.RUNNING:
                self.handle_fixes(batch)
        except KafkaError as e:
            self.recover(e)
        except Exception:  # a bug: take back this turn's decisions, restore, and go on
            self.errors += 1
            if time.monotonic() - self._error_logged >= ERROR_LOG_INTERVAL_S:
                self._error_logged = time.monotonic()
                log.exception("zone processor turn failed (%d times so far); aborting it and restoring", self.errors)
            self.abort_and_restore()

    def poll_zones(self, timeout_ms: int) -> None:
        batch = self.zones.poll(timeout_ms=timeout_ms, max_records=ZONE_MAX_RECORDS)
        now = time.time()
        for records in batch.values():
            take(records, decode.ZONES, now, self.apply_zones, self.refuse_zone)
        if batch:
            self.dead_letter_zones()

    def apply_zones(self, items: list[tuple[Zone | ZoneDeleted, Record]]) -> None:
        for change, record in items:
            if isinstance(change, ZoneDeleted):
                self.table.remove(change.zone_id)
                for tracker in self.trackers.values():
                    self.emit(tracker.zone_deleted(change.zone_id))
                continue
            try:
                self.table.put(change)
            except InvalidZone as e:  # too_many_zones
                self.refuse_zone(record, Refusal(e.reason, e.detail))

    def refuse_zone(self, record: Record, refusal: Refusal) -> None:
        self.refusals.note(record, refusal)
        self.zone_refusals.append((record, refusal))

    def dead_letter_zones(self) -> None:
        """The instance holding partition 0 copies the invalid zones not copied yet, in its transaction."""
        if self.zones_dlq_from is None or self.phase is not Phase.RUNNING:
            return
        for record, refusal in self.zone_refusals:
            if record.offset >= self.zones_dlq_from:
                self.dead_letter(record, refusal)
                self.zones_dlq_from = record.offset + 1

    def handle_fixes(self, batch: dict[TopicPartition, list[Any]]) -> None:
        now = time.time()
        for tp, records in batch.items():
            tracker = self.trackers.get(tp.partition)
            if tracker is None:
                continue
            self.counts.fixes += len(records)
            take(
                records,
                decode.FIXES,
                now,
                functools.partial(self.on_fixes, tracker),
                self.refuse_fix,
            )

    def on_fixes(self, tracker: ZoneTracker, items: list[tuple[Fix, Record]]) -> None:
        table = self.table
        found = table.containing_many([fix.latitude for fix, _ in items], [fix.longitude for fix, _ in items])
        for (fix, record), inside in zip(items, found, strict=True):
            events = tracker.observe(
                fix.driver_id,
                fix.latitude,
                fix.longitude,
                fix.timestamp,
                record.partition,
                record.offset,
                inside,
                table,
            )
            if events:
                self.emit(events)

    def refuse_fix(self, record: Record, refusal: Refusal) -> None:
        self.counts.refused += 1
        self.refusals.note(record, refusal)
        if self.config.dead_letter or refusal.reason == decode.INTERNAL_ERROR:
            self.dead_letter(record, refusal)

    def dead_letter(self, record: Record, refusal: Refusal) -> None:
        self.begin_transaction()
        try:
            send_dead_letter(self.producer, record, refusal)
        except KafkaError as e:  # too large for the producer, or no metadata in time
            log.warning("could not dead-letter %s/%d/%d (%s)", record.topic, record.partition, record.offset, e)
            self.counts.dead_letter_failures += 1
            return
        self.counts.dead_letters += 1

    def emit(self, events: list[ZoneEvent]) -> None:
        if not events:
            return
        self.begin_transaction()
        for event in events:
            self.producer.send(self.config.events_topic, key=event.driver_id.encode("utf-8"), value=encode_event(event))
            if event.event == "enter":
                self.counts.enters += 1
            elif event.event == "exit":
                self.counts.exits += 1
            else:
                self.counts.dwells += 1

    # ---- transactions

    def begin_transaction(self) -> None:
        if not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True

    def commit(self) -> None:
        """The events so far, the changed drivers and the offsets read: one transaction."""
        if self.phase is not Phase.RUNNING:
            return
        started = time.monotonic()
        try:
            for partition, tracker in self.trackers.items():
                for driver_id, value in tracker.take_changes().items():
                    self.begin_transaction()
                    self.producer.send(
                        self.config.state_topic, key=driver_id.encode("utf-8"), value=value, partition=partition
                    )
                    self.counts.state_records += 1
            offsets = {
                TopicPartition(self.config.driver_topic, p): OffsetAndMetadata(
                    self.fixes.position(TopicPartition(self.config.driver_topic, p)), "", -1
                )
                for p in self.trackers
            }
            if self.zones_dlq_from is not None:
                offsets[self.zones_tp] = OffsetAndMetadata(self.zones.position(self.zones_tp), "", -1)
            if not self.in_transaction and offsets == self._last_offsets:
                return
            self.begin_transaction()
            if offsets:
                transactions.send_offsets(
                    self.producer, offsets, self.fixes.group_metadata(), transactions.TRANSACTION_WAIT_S
                )
            transactions.commit(self.producer, transactions.TRANSACTION_WAIT_S)
        except KafkaError as e:
            self.recover(e)
            return
        self.in_transaction = False
        self._last_offsets = offsets
        self.counts.transactions += 1
        self.counts.commit_s += time.monotonic() - started

    def recover(self, error: KafkaError) -> None:
        if self.phase is Phase.FENCED:
            return
        if transactions.is_fenced(error, self._producer):
            self.phase = Phase.FENCED
            self.fenced_reason = (
                f"another zone processor runs with instance id {self.config.instance!r} in group "
                f"{self.config.group_id!r} ({type(error).__name__}); give each one its own --instance-id"
            )
            return
        log.warning("transaction failed (%s: %s); aborting it and restoring", type(error).__name__, error)
        self.abort_and_restore(producer_lost=isinstance(error, transactions.TransactionTimedOut))

    def abort_and_restore(self, producer_lost: bool = False) -> None:
        """Abort the open transaction and forget what it decided: the state is restored from the changelog
        and the fixes are read again from the committed offsets."""
        self.counts.aborts += 1
        if self.in_transaction:
            fenced = transactions.abort_or_replace(
                self.producer, producer_lost, self.replace_producer, transactions.TRANSACTION_WAIT_S
            )
            if fenced is not None:
                self.recover(fenced)
                return
        self.in_transaction = False
        self.trackers.clear()
        self._last_offsets = {}
        self.zones_dlq_from = None
        if self.phase is not Phase.FENCED:
            self.phase = Phase.RESTORE_WANTED
        self.pause_fixes()

    def replace_producer(self, why: str) -> None:
        """Close the producer and start a new one with the same transactional id (see the matcher's)."""
        log.warning("%s; starting a new producer, which settles the open transaction", why)
        transactions.discard(self.producer)
        self._producer = connect(
            self.open_producer, "zone processor producer", self.config.bootstrap_servers, self.stop
        )
        if self._producer is None:
            self.stop.set()

    # ---- partitions and restore

    def on_revoked(self, revoked: Any) -> None:
        self.commit()
        for tp in revoked:
            self.trackers.pop(tp.partition, None)
            if tp.partition == 0:
                self.zones_dlq_from = None

    def on_lost(self, lost: Any) -> None:
        log.warning("lost partitions %s (evicted from the group); aborting", sorted(tp.partition for tp in lost))
        if self.phase is not Phase.FENCED:
            self.abort_and_restore()

    def on_assigned(self, assigned: Any) -> None:
        log.info(
            "assigned partitions %s of %s; restoring their state before processing",
            sorted(tp.partition for tp in assigned),
            self.config.driver_topic,
        )
        if self.phase is not Phase.FENCED:
            self.phase = Phase.RESTORE_WANTED
        self.pause_fixes()

    def pause_fixes(self) -> None:
        if self._fixes is None:
            return
        assigned = list(self._fixes.assignment())
        if assigned:
            self._fixes.pause(*assigned)

    def begin_restore(self) -> None:
        """Committed offsets first (they wait for any transaction still open on them), then the changelog's
        last stable offsets: so the state read is the one committed with those offsets."""
        config = self.config
        self._restore_started = time.monotonic()
        self.counts.restores += 1
        self.trackers.clear()
        self.zones_dlq_from = None
        self._last_offsets = {}
        assigned = sorted(self.fixes.assignment())
        self.pause_fixes()
        self._committed = {tp: self.fixes.committed(tp) for tp in assigned}
        if any(tp.partition == 0 for tp in assigned):
            self._committed[self.zones_tp] = self.fixes.committed(self.zones_tp)
        changelog = [TopicPartition(config.state_topic, tp.partition) for tp in assigned]
        self._restoring = {tp.partition: ZoneTracker() for tp in assigned}
        if changelog:
            self.state.assign(changelog)
            self.state.seek_to_beginning(*changelog)
            self._restore_targets = dict(self.state.end_offsets(changelog))
        else:
            self._restore_targets = {}
        self._zones_target = self.zones.end_offsets([self.zones_tp])[self.zones_tp]
        self.phase = Phase.RESTORING

    def continue_restore(self) -> None:
        if self._restore_targets:
            batch = self.state.poll(timeout_ms=0, max_records=STATE_MAX_RECORDS)
            for tp, records in batch.items():
                tracker = self._restoring.get(tp.partition)
                for record in records:
                    if tracker is None or record.key is None:
                        continue
                    if not tracker.restore(record.key.decode("utf-8", "replace"), record.value):
                        log.warning(
                            "unreadable changelog record %s/%d/%d skipped", tp.topic, tp.partition, record.offset
                        )
        behind = {
            tp.partition: target for tp, target in self._restore_targets.items() if self.state.position(tp) < target
        }
        zones_behind = self.zones.position(self.zones_tp) < self._zones_target
        if behind or zones_behind:
            if (
                time.monotonic() - self._restore_started > RESTORE_SLOW_S
                and self._restore_warned < self._restore_started
            ):
                self._restore_warned = time.monotonic()
                log.warning(
                    "restore slow: changelog partitions %s not at their targets yet%s",
                    {
                        p: (self.state.position(TopicPartition(self.config.state_topic, p)), t)
                        for p, t in behind.items()
                    },
                    ", zones behind" if zones_behind else "",
                )
            return
        self.finish_restore()

    def finish_restore(self) -> None:
        config = self.config
        lookback_ms = int((time.time() - config.start_lookback_s) * 1000)
        fix_partitions = [tp for tp in self._committed if tp.topic == config.driver_topic]
        for tp in fix_partitions:
            committed = self._committed[tp]
            if committed is not None:
                self.fixes.seek(tp, committed)
                continue
            found = self.fixes.offsets_for_times({tp: lookback_ms}).get(tp)
            if found is None:
                self.fixes.seek_to_end(tp)
            else:
                self.fixes.seek(tp, found.offset)
        self.trackers, self._restoring = self._restoring, {}
        self.phase = Phase.RUNNING
        if self.zones_tp in self._committed:
            self.zones_dlq_from = self._committed[self.zones_tp] or 0
        for tracker in self.trackers.values():
            self.emit(tracker.reconcile(self.table))
        self.dead_letter_zones()
        if fix_partitions:
            self.fixes.resume(*fix_partitions)
        if not self.trackers:
            return
        log.info(
            "restored in %.2f s: %d drivers inside zones, %d zones; processing partitions %s",
            time.monotonic() - self._restore_started,
            sum(len(t) for t in self.trackers.values()),
            len(self.table),
            sorted(self.trackers),
        )

    # ---- helpers

    def partition_count(self, consumer: KafkaConsumer, topic: str) -> int:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:  # not in the metadata yet: retried like any Kafka error
            raise KafkaError(f"topic {topic!r} has no partitions the zone processor can see yet")
        return len(numbers)

    def lag(self) -> int | None:
        total = 0
        for p in self.trackers:
            tp = TopicPartition(self.config.driver_topic, p)
            highwater = self.fixes.highwater(tp)
            if highwater is None:
                return None
            total += max(0, highwater - self.fixes.position(tp))
        return total

    def log_stats(self, seconds: float) -> None:
        if seconds <= 0:
            return
        d = self.counts.minus(self._logged)
        lag = self.lag() if self.phase is Phase.RUNNING else None
        commit_ms = 1000 * d.commit_s / d.transactions if d.transactions else 0.0
        log.info(
            "%d fixes in %.1f s (%.0f/s), %d zones, %d events (%.1f/s: %d enter, %d exit, %d dwell), "
            "%d drivers inside zones, lag %s, %d refused, %d dead-lettered, %d transactions (%.0f ms each), %s",
            d.fixes,
            seconds,
            d.fixes / seconds,
            len(self.table),
            d.events,
            d.events / seconds,
            d.enters,
            d.exits,
            d.dwells,
            sum(len(t) for t in self.trackers.values()),
            "-" if lag is None else lag,
            d.refused,
            d.dead_letters,
            d.transactions,
            commit_ms,
            f"partitions {sorted(self.trackers)}" if self.phase is Phase.RUNNING else self.phase.value,
        )
        self.refusals.flush()
        self._logged = replace(self.counts)
