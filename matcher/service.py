"""The matcher process: read drivers and ride requests from Kafka, answer each request once.

One thread, three clients:

- a *state* consumer (no group) reads every partition of ``driver-location`` (where drivers
  are, and whether they are free) and of ``ride-matches`` read_committed (which requests are
  answered and which drivers are reserved, by this matcher or any other);
- a *request* consumer in the matchers' group reads this instance's partitions of
  ``ride-requests``;
- a *transactional* producer writes answers and dead letters, and commits the request offsets
  in the same transaction, so answers and offsets move together or not at all.

Before it matches anything after a start, a partition assignment or an aborted transaction,
the matcher *resyncs*: it reads the committed offsets (stable: no transaction that commits
them is still open), rewinds ``ride-matches`` to a little before the oldest request it will
read again, and reads it up to its high watermark. It then knows every committed answer of
the requests it is about to re-read and every reservation, so it neither answers a request
twice nor gives a reserved driver away.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import IO
from wsgiref.simple_server import WSGIServer

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    TransactionAbortedError,
)
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
from bus.deadletter import (
    DeadLetterSink,
    dead_letter_topic,
    ensure_dead_letter_topic,
    send_dead_letter,
)
from bus.intake import Record, Refusals, take
from bus.lean_fetch import lean_consumer
from bus.partitioning import key_partition
from bus.runtime import claim_instance
from fleet import decode
from fleet.decode import Refusal
from fleet.errors import CannotListen, FleetError
from fleet.rides import MATCHED, RideMatch, commit_metadata, encode_match, match_key, parse_commit_metadata
from fleet.settings import bootstrap_list
from fleet.throttle import Throttle
from matcher.lifecycle import Lifecycle, Phase, Resync
from matcher.matching import Matcher, Source
from matcher.metrics import serve_metrics
from matcher.settings import MatcherSettings

log = logging.getLogger(__name__)

# Clocks of the hosts that write requests and answers may disagree by this much; ride-matches
# is read again from this long before the oldest request that will be read again.
LOOKBACK_MARGIN_S = 60.0
POLL_MS = 20
STATE_MAX_RECORDS = 5000
# A resync's offset look-ups wait this long at most; one that times out gets a new state consumer (below).
LOOKUP_TIMEOUT_MS = 10_000
REQUEST_MAX_RECORDS = 1000
# A matcher that dies is replaced (its partitions reassigned) after this long; one restarted
# with the same instance id takes its partitions back at once (static group membership).
SESSION_TIMEOUT_MS = 10_000
# ... unless Kafka hands it back nothing. kafka-python joins with JoinGroup v7, and a static member that
# rejoins a stable group is given the assignment Kafka holds, without a rebalance; after a crash while a broker
# was down that was seen to be none at all, for good (tests/test_cluster_faults.py, 2 CI runs of 3). A matcher
# alone in its group and assigned nothing for this long removes its own membership (LeaveGroup by instance id):
# it then joins an empty group again, which is a real rebalance.
ALONE_CHECK_S = SESSION_TIMEOUT_MS / 1000
FORGET_ANSWERS_INTERVAL_S = 10.0
# A transaction that failed because a dead letter could not be written would fail again on the same
# request after the resync, forever. So for this long after such a failure, refused requests are not
# copied (counted as dead-letter failures) and matching goes on; then copying is tried again.
DEAD_LETTER_PAUSE_S = 30.0
# An unexpected error of one turn of the loop (a bug) is logged at most this often.
ERROR_LOG_INTERVAL_S = 60.0


class FatalError(FleetError):
    """The matcher cannot go on (another instance runs with its id); one line for the user."""


@lru_cache(maxsize=4096)
def partition_of(area: str, partitions: int) -> int:
    """The partition of ``ride-requests`` an area's requests land on (Kafka's default partitioner)."""
    return key_partition(area.encode("utf-8"), partitions)


@dataclass
class Counts:
    """What the matcher did since it started; the log line shows the difference over its interval."""

    requests: int = 0
    matched: int = 0
    no_driver: int = 0
    dead_letters: int = 0
    dead_letter_failures: int = 0
    skipped: int = 0
    fixes: int = 0
    refused_state: int = 0
    transactions: int = 0
    commit_s: float = 0.0

    def minus(self, earlier: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})


def stats_line(
    delta: Counts, seconds: float, waits_s: list[float], matcher: Matcher, pushed_out: int, evicted: int
) -> str:
    """One line about an interval: ``delta`` of the counts, the times to match, the riders pushed out and
    drivers evicted by the caps, and where the matcher stands."""
    median = f"{statistics.median(waits_s):.2f} s" if waits_s else "-"
    commit_ms = 1000 * delta.commit_s / delta.transactions if delta.transactions else 0.0
    pool = matcher.pool
    return (
        f"{delta.requests} requests in {seconds:.1f} s ({delta.requests / seconds:.1f}/s): "
        f"{delta.matched} matched, {delta.no_driver} no driver, {len(matcher.waiting)} waiting "
        f"({pushed_out} pushed out by the cap), "
        f"{delta.dead_letters} dead-lettered ({delta.dead_letter_failures} could not be), "
        f"{delta.skipped} already answered; median time to match {median}; drivers {len(pool.drivers)} known "
        f"({evicted} evicted by the cap), {len(pool.index)} free, {len(pool.reservations)} reserved; "
        f"{delta.fixes} fixes, {delta.transactions} transactions ({commit_ms:.0f} ms each)"
    )


class MatcherService:
    def __init__(self, config: MatcherSettings, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.matcher = Matcher(config.match)
        # Opened by start_up(); read through the properties below, which say so if they are not.
        self._admin: KafkaAdminClient | None = None
        self._producer: KafkaProducer | None = None
        self._state_consumer: KafkaConsumer | None = None
        self._request_consumer: KafkaConsumer | None = None
        self.lifecycle: Lifecycle[TopicPartition] = Lifecycle()
        self.replay_until: dict[int, int] = {}  # refused requests below these offsets were dead-lettered
        self.committed_positions: dict[int, tuple[int, int, int]] = {}
        # Per request partition: answers newer than this (ms, minus the margin) may still be needed.
        self.answers_floor_ms: dict[int, int] = {}
        # Until the first resync completes, it also waits for the drivers' recent past.
        self.drivers_target: dict[TopicPartition, int] = {}
        self.counts = Counts()
        self.waits_s: list[float] = []  # times to match since the last stats line
        self._logged = Counts()
        self._logged_evictions = (0, 0)
        # Dead letters of the open transaction, to tell afterwards whether one of them made it fail.
        self.transaction_dead_letters: list = []
        self.dead_letters_paused_until = 0.0
        self.refusals = Refusals("matcher")
        # Records of driver-location and ride-matches that made the matcher raise (a bug), copied to their
        # dead-letter topics outside the transactions: those topics are not the matcher's to commit.
        self.state_dead_letters = DeadLetterSink(config.bootstrap_servers, f"matcher-{config.instance}-dlq")
        self.errors = 0
        self.error_log = Throttle(ERROR_LOG_INTERVAL_S)
        self.metrics_server: WSGIServer | None = None
        self.instance_lock: IO[str] | None = None
        self.next_alone_check = time.monotonic() + ALONE_CHECK_S

    # ---- life cycle

    def run(self) -> int:
        """Connect, then consume, match and produce until ``stop`` is set. Returns an exit code."""
        config = self.config
        # Two live matchers with one instance id would fence each other's transactions, back and forth: the
        # second one started on this host stops at once instead (a crashed one's zombie is still fenced).
        self.instance_lock = claim_instance("matcher", config.transactional_id)
        log.info(
            "matcher %s starting: requests from %s, answers to %s, drivers from %s, group %s",
            config.instance,
            config.request_topic,
            config.match_topic,
            config.driver_topic,
            config.group_id,
        )
        if config.metrics_address is not None:
            host, port = config.metrics_address
            try:
                self.metrics_server = serve_metrics(self, host, port)
            except OSError as e:
                raise CannotListen(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from e
            log.info("metrics at http://%s:%d/metrics", host, port)
        try:
            if not self.connect():
                return 0
            interval_start = next_commit = next_forget = time.monotonic()
            next_log = interval_start + config.log_interval_s
            while not self.stop.is_set():
                self.step()
                self.raise_if_fenced()
                clock = time.monotonic()
                if clock >= next_commit:
                    self.commit()
                    next_commit = clock + config.commit_interval_s
                if clock >= next_forget:
                    self.forget_old_answers(time.time())
                    next_forget = clock + FORGET_ANSWERS_INTERVAL_S
                if clock >= next_log:
                    self.log_stats(clock - interval_start)
                    interval_start, next_log = clock, clock + config.log_interval_s
            self.commit()
            self.raise_if_fenced()
        except FatalError as e:
            log.error("%s", e)
            return 1
        finally:
            self.close()
        log.info("matcher %s stopped", config.instance)
        return 0

    def connect(self) -> bool:
        """Open every client and position the state consumer, as one step retried until Kafka answers
        (False if stopped first): a broker that drops during start-up costs a retry, not a traceback."""
        return connect(self.start_up, "matcher", self.config.bootstrap_servers, self.stop) is not None

    def start_up(self) -> MatcherService:
        """Topics, producer, consumers, positions; on a Kafka error, closes what it opened and raises it."""
        config = self.config
        servers = bootstrap_list(config.bootstrap_servers)
        try:
            self._admin = KafkaAdminClient(
                bootstrap_servers=servers,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
            topics = (config.driver_topic, config.request_topic, config.match_topic)
            ensure_topics(self.admin, dict.fromkeys(topics, config.partitions))
            ensure_dead_letter_topic(self.admin, config.request_topic)
            self._producer = self.open_producer()
            self._state_consumer = self.open_state_consumer()
            self._request_consumer = lean_consumer(
                bootstrap_servers=servers,
                group_id=config.group_id,
                group_instance_id=config.instance,
                isolation_level="read_committed",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=SESSION_TIMEOUT_MS,
                max_poll_records=REQUEST_MAX_RECORDS,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
            self.start_state_consumer()
        except KafkaError:
            self.close_clients()
            raise
        self.request_consumer.subscribe([config.request_topic], listener=ForwardRebalance(self))
        return self

    def open_producer(self) -> KafkaProducer:
        return transactions.open_producer(self.config.bootstrap_servers, self.config.transactional_id)

    def new_producer(self) -> KafkaProducer | None:
        """A new transactional producer, retried until Kafka answers (None if stopped first)."""
        return connect(self.open_producer, "matcher producer", self.config.bootstrap_servers, self.stop)

    def open_state_consumer(self) -> KafkaConsumer:
        return lean_consumer(
            bootstrap_servers=bootstrap_list(self.config.bootstrap_servers),
            isolation_level="read_committed",
            enable_auto_commit=False,
            max_poll_records=STATE_MAX_RECORDS,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )

    def replace_state_consumer(self, why: str) -> None:
        """A new state consumer, reading the drivers again from ``driver_max_age_s`` ago: measured in the
        leader-kill test, kafka-python's consumer could keep timing out on ``offsets_for_times`` for minutes
        after a broker's restart, with the cluster whole again, and the matcher resynced in vain meanwhile."""
        log.warning("%s; starting a new state consumer", why)
        new = self.open_state_consumer()  # if Kafka refuses, the old one stays and the next resync tries again
        old, self._state_consumer = self._state_consumer, new
        if old is not None:
            try:
                old.close()
            except KafkaError as e:
                log.info("the old state consumer did not close cleanly (%s: %s)", type(e).__name__, e)
        self.start_state_consumer()

    def start_state_consumer(self) -> None:
        """Read every partition of driver-location from ``driver_max_age_s`` ago, and of ride-matches."""
        config = self.config
        drivers = self.partitions(self.state_consumer, config.driver_topic)
        matches = self.partitions(self.state_consumer, config.match_topic)
        self.state_consumer.assign(drivers + matches)
        since_ms = int((time.time() - config.match.driver_max_age_s) * 1000)
        self.seek_to_time(drivers, since_ms)
        self.drivers_target = self.state_consumer.end_offsets(drivers)

    def close(self) -> None:
        if self.instance_lock is not None:
            self.instance_lock.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.state_dead_letters.close()
        self.close_clients()

    def close_clients(self) -> None:
        for client in (self._request_consumer, self._state_consumer):
            if client is not None:
                client.close()
        if self._producer is not None:
            close_producer(self._producer, 5, "the matcher's producer")
        if self._admin is not None:
            self._admin.close()
        self._request_consumer = self._state_consumer = self._producer = self._admin = None

    @property
    def admin(self) -> KafkaAdminClient:
        return opened(self._admin, "matcher's admin client")

    @property
    def producer(self) -> KafkaProducer:
        return opened(self._producer, "matcher's producer")

    @property
    def state_consumer(self) -> KafkaConsumer:
        """driver-location and ride-matches, every partition (no group)."""
        return opened(self._state_consumer, "matcher's state consumer")

    @property
    def request_consumer(self) -> KafkaConsumer:
        """ride-requests, this instance's partitions in the matchers' group."""
        return opened(self._request_consumer, "matcher's request consumer")

    # ---- one turn of the loop

    def step(self) -> None:
        try:
            now = time.time()
            self.apply_state(self.state_consumer.poll(timeout_ms=0, max_records=STATE_MAX_RECORDS), now)
            if self.lifecycle.phase is Phase.RESYNC_WANTED:
                try:
                    self.begin_resync()
                except KafkaTimeoutError:
                    self.replace_state_consumer("the resync's offset look-ups timed out")
                    raise
            if self.lifecycle.phase is Phase.RESYNCING:
                self.try_finish_resync()
            batch = self.request_consumer.poll(timeout_ms=POLL_MS, max_records=REQUEST_MAX_RECORDS)
            if not self.request_consumer.assignment():
                self.rejoin_if_alone()
            if not self.lifecycle.matching:
                return  # nothing is decided until every committed answer is known
            now = time.time()
            for partition, records in batch.items():
                if partition.partition in self.lifecycle.ready:
                    for record in records:
                        self.handle_request(record, now)
            for answer in self.matcher.tick(now):
                self.emit(answer)
        except KafkaError as e:
            self.recover(e)
        except Exception:  # a bug: take back this turn's decisions, resync, and go on
            self.errors += 1
            if self.error_log.ready() is not None:
                log.exception("matcher turn failed (%d times so far); aborting it and resyncing", self.errors)
            self.abort_and_forget()

    def apply_state(self, batch: dict, now: float) -> None:
        """Drivers' fixes and committed answers, each record through its total decoder."""
        for partition, records in batch.items():
            if partition.topic == self.config.driver_topic:
                take(
                    records,
                    decode.FIXES,
                    now,
                    lambda items: self.on_fixes(items, now),
                    self.refuse_state,
                )
            else:
                take(
                    records,
                    decode.MATCHES,
                    now,
                    lambda items: self.on_matches(items, now),
                    self.refuse_state,
                )

    def on_fixes(self, items: list, now: float) -> None:
        for fix, _ in items:
            self.matcher.pool.on_fix(fix, now)
        self.counts.fixes += len(items)

    def on_matches(self, items: list, now: float) -> None:
        for match, _ in items:
            self.matcher.on_committed(match, now)

    def refuse_state(self, record: Record, refusal: Refusal) -> None:
        """A record of driver-location or ride-matches the matcher cannot use: the dashboard dead-letters
        refused ones; one that made the matcher itself fail is copied here."""
        self.counts.refused_state += 1
        self.refusals.note(record, refusal)
        if refusal.reason == decode.INTERNAL_ERROR:
            self.state_dead_letters.send(record, refusal)

    def handle_request(self, record, now: float) -> None:
        """Answer (or keep waiting) one request; a refused one is dead-lettered in the transaction."""
        source = Source(record.partition, record.offset, record.timestamp)
        self.counts.requests += 1
        request = decode.REQUESTS(record.key, record.value, now)
        if isinstance(request, Refusal):
            self.matcher.advance(source)
            self.dead_letter_request(record, request)
            return
        if self.matcher.is_answered(request.request_id):
            self.counts.skipped += 1
        try:
            answer = self.matcher.submit(request, source, now)
        except Exception as e:  # noqa: BLE001 - a bug costs this request, answered by its dead letter
            self.matcher.advance(source)
            self.dead_letter_request(record, Refusal.of_exception(e))
            return
        if answer is not None:
            self.emit(answer)

    def dead_letter_request(self, record, refusal: Refusal) -> None:
        self.refusals.note(record, refusal)
        if record.offset < self.replay_until.get(record.partition, 0):
            self.counts.skipped += 1  # dead-lettered before a restart, in a committed transaction
            return
        if time.monotonic() < self.dead_letters_paused_until:
            self.counts.dead_letter_failures += 1
            return
        self.begin_transaction()
        try:
            future = send_dead_letter(self.producer, record, refusal)
        except KafkaError as e:  # too large for the producer, or no metadata for the topic in time
            log.warning("could not dead-letter %s/%d/%d (%s)", record.topic, record.partition, record.offset, e)
            self.counts.dead_letter_failures += 1
            return
        self.transaction_dead_letters.append(future)

    def emit(self, answer: RideMatch) -> None:
        self.begin_transaction()
        self.producer.send(self.config.match_topic, key=match_key(answer.request_id), value=encode_match(answer))
        if answer.outcome == MATCHED:
            self.counts.matched += 1
            self.waits_s.append(answer.time_to_match_s)
        else:
            self.counts.no_driver += 1

    # ---- transactions

    def begin_transaction(self) -> None:
        if not self.lifecycle.in_transaction:
            self.producer.begin_transaction()
            self.lifecycle.transaction_begun()
            self.transaction_dead_letters = []

    def commit(self) -> None:
        """Commit the answers so far with the offsets of the requests read: one transaction."""
        if not self.lifecycle.matching:
            return
        positions = {
            partition: (offset, timestamp_ms, max(self.matcher.read_to(partition), self.replay_until.get(partition, 0)))
            for partition, (offset, timestamp_ms) in self.matcher.commit_positions().items()
        }
        if not self.lifecycle.in_transaction and positions == self.committed_positions:
            return
        started = time.monotonic()
        try:
            self.begin_transaction()
            if positions:
                offsets = {
                    TopicPartition(self.config.request_topic, partition): OffsetAndMetadata(
                        offset, commit_metadata(timestamp_ms, read_to), -1
                    )
                    for partition, (offset, timestamp_ms, read_to) in positions.items()
                }
                transactions.send_offsets(
                    self.producer, offsets, self.request_consumer.group_metadata(), transactions.TRANSACTION_WAIT_S
                )
            transactions.commit(self.producer, transactions.TRANSACTION_WAIT_S)
        except KafkaError as e:
            self.recover(e)
            return
        self.lifecycle.transaction_ended()
        self.counts.dead_letters += len(self.transaction_dead_letters)
        self.transaction_dead_letters = []
        self.counts.commit_s += time.monotonic() - started
        self.matcher.checkpoint()
        self.committed_positions = positions
        for partition, (_, timestamp_ms, _) in positions.items():
            self.answers_floor_ms[partition] = timestamp_ms
        self.counts.transactions += 1

    def recover(self, error: KafkaError) -> None:
        """After a Kafka error: stop if another instance took our id, else abort and resync."""
        if self.lifecycle.phase is Phase.FENCED:
            return
        if transactions.is_fenced(error, self._producer):
            self.lifecycle.fence(
                f"another matcher runs with instance id {self.config.instance!r} in group "
                f"{self.config.group_id!r} ({type(error).__name__}); give each one its own --instance-id"
            )
            return
        log.warning("transaction failed (%s: %s); aborting it and resyncing", type(error).__name__, error)
        self.pause_dead_letters_if_they_failed()
        self.abort_and_forget(producer_lost=isinstance(error, transactions.TransactionTimedOut))

    def replace_producer(self, why: str) -> None:
        """Close the producer and start a new one with the same transactional id: its ``init_transactions``
        completes or aborts whatever the old one left open."""
        log.warning("%s; starting a new producer, which settles the open transaction", why)
        transactions.discard(self.producer)
        self._producer = self.new_producer()
        if self._producer is None:  # stopped while Kafka was away
            self.stop.set()

    def pause_dead_letters_if_they_failed(self) -> None:
        """A dead-letter topic that cannot be written fails every transaction that writes to it: stop
        writing to it for a while, or the same refused request would fail its transaction forever."""
        failed = [
            f
            for f in self.transaction_dead_letters
            if f.failed() and not f.retriable() and not isinstance(f.exception, TransactionAbortedError)
        ]
        if not failed:
            return
        self.dead_letters_paused_until = time.monotonic() + DEAD_LETTER_PAUSE_S
        log.error(
            "%s could not be written (%s); refused requests are not copied for %.0f s, then it is tried again",
            dead_letter_topic(self.config.request_topic),
            failed[0].exception,
            DEAD_LETTER_PAUSE_S,
        )

    def abort_and_forget(self, producer_lost: bool = False) -> None:
        """Abort the open transaction, take back what it decided, and resync before matching again.

        ``producer_lost``: the coordinator never answered, so the producer's idea of the transaction is
        unknown and an abort would wait in vain too; a new producer settles it instead.
        """
        if self.lifecycle.in_transaction:
            fenced = transactions.abort_or_replace(
                self.producer, producer_lost, self.replace_producer, transactions.TRANSACTION_WAIT_S
            )
            if fenced is not None:
                self.recover(fenced)
                return
        self.lifecycle.aborted()
        self.matcher.rollback(time.time())
        self.committed_positions = {}
        self.pause_requests()

    # ---- partitions and resync

    def rejoin_if_alone(self) -> None:
        """With no partition for :data:`ALONE_CHECK_S` while no other member is in the group: leave and rejoin
        (see :data:`ALONE_CHECK_S`). More matchers than partitions is the legitimate case, and left alone."""
        clock = time.monotonic()
        if clock < self.next_alone_check:
            return
        self.next_alone_check = clock + ALONE_CHECK_S
        group_id, instance = self.config.group_id, self.config.instance
        try:
            group = self.admin.describe_groups([group_id]).get(group_id) or {}
            members = [member.get("group_instance_id") for member in group.get("members") or []]
            if group.get("group_state") != "Stable" or members != [instance]:
                return
            log.warning(
                "alone in group %s and assigned no partition of %s: leaving the group to join it again",
                group_id,
                self.config.request_topic,
            )
            self.admin.remove_group_members(group_id, [MemberToRemove(group_instance_id=instance)])
        except KafkaError as e:  # Kafka is away: the next check asks again
            log.info("could not look at group %s (%s: %s)", group_id, type(e).__name__, e)

    def on_revoked(self, revoked) -> None:
        self.commit()
        self.drop_partitions(revoked)

    def on_lost(self, lost) -> None:
        log.warning("lost partitions %s (evicted from the group); aborting", sorted(tp.partition for tp in lost))
        if self.lifecycle.phase is not Phase.FENCED:
            self.abort_and_forget()
        self.drop_partitions(lost)

    def on_assigned(self, assigned) -> None:
        log.info(
            "assigned partitions %s of %s; resyncing before matching",
            sorted(tp.partition for tp in assigned),
            self.config.request_topic,
        )
        self.lifecycle.want_resync()
        self.pause_requests()

    def drop_partitions(self, partitions) -> None:
        numbers = [tp.partition for tp in partitions]
        self.matcher.forget_partitions(numbers)
        self.lifecycle.drop(numbers)
        for number in numbers:
            self.committed_positions.pop(number, None)
            self.answers_floor_ms.pop(number, None)

    def pause_requests(self) -> None:
        """No request is read while the matcher resyncs (the position stays where the resync puts it)."""
        assigned = list(self.request_consumer.assignment())
        if assigned:
            self.request_consumer.pause(*assigned)

    def begin_resync(self) -> None:
        partitions = sorted(self.request_consumer.assignment())
        committed = {tp: self.request_consumer.committed(tp, metadata=True) for tp in partitions}
        log.debug("committed offsets: %s", committed)
        now = time.time()
        lookback_ms = int((now - self.config.match.reservation_timeout_s - LOOKBACK_MARGIN_S) * 1000)
        for offset in committed.values():
            timestamp_ms = parse_commit_metadata(offset.metadata)[0] if offset is not None else 0
            lookback_ms = min(lookback_ms, timestamp_ms - int(LOOKBACK_MARGIN_S * 1000))
        matches = self.partitions(self.state_consumer, self.config.match_topic)
        self.seek_to_time(matches, max(0, lookback_ms))
        latest = self.admin.list_partition_offsets(dict.fromkeys(matches, -1))  # high watermarks
        targets = {tp: found.offset for tp, found in latest.items()}
        targets.update(self.drivers_target)
        self.lifecycle.resync_started(Resync(partitions, committed, targets, time.monotonic()))

    def try_finish_resync(self) -> None:
        under_way = self.lifecycle.resync
        if under_way is None or not under_way.reached(self.state_consumer.position):
            return
        resync = self.lifecycle.resync_finished({tp.partition for tp in under_way.partitions})
        self.drivers_target = {}
        now = time.time()
        for tp in resync.partitions:
            offset = resync.committed[tp]
            if offset is None:
                self.request_consumer.seek_to_beginning(tp)
                timestamp_ms, read_to = 0, 0
            else:
                self.request_consumer.seek(tp, offset.offset)
                timestamp_ms, read_to = parse_commit_metadata(offset.metadata)
            self.replay_until[tp.partition] = read_to
            self.answers_floor_ms[tp.partition] = timestamp_ms
        self.set_ownership([tp.partition for tp in resync.partitions], now)
        if resync.partitions:
            self.request_consumer.resume(*resync.partitions)
        pool = self.matcher.pool
        log.info(
            "resynced in %.2f s: %d drivers known, %d free, %d reserved, %d answers known; matching partitions %s",
            time.monotonic() - resync.started,
            len(pool.drivers),
            len(pool.index),
            len(pool.reservations),
            self.matcher.answered,
            sorted(self.lifecycle.ready),
        )

    def set_ownership(self, owned: list[int], now: float) -> None:
        """This instance may assign the drivers in the areas whose requests it reads."""
        count = len(self.partitions(self.request_consumer, self.config.request_topic))
        owned_set = frozenset(owned)
        if len(owned_set) >= count:
            self.matcher.pool.set_ownership(None, now)
        else:
            self.matcher.pool.set_ownership(lambda area: partition_of(area, count) in owned_set, now)

    # ---- helpers

    def partitions(self, consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:  # not in the metadata yet (just created, or Kafka away): retried like any Kafka error
            raise KafkaError(f"topic {topic!r} has no partitions the matcher can see yet")
        return [TopicPartition(topic, n) for n in sorted(numbers)]

    def seek_to_time(self, partitions: list[TopicPartition], timestamp_ms: int) -> None:
        found = self.state_consumer.offsets_for_times(dict.fromkeys(partitions, timestamp_ms), LOOKUP_TIMEOUT_MS)
        for tp in partitions:
            if found.get(tp) is None:
                self.state_consumer.seek_to_end(tp)
            else:
                self.state_consumer.seek(tp, found[tp].offset)

    def forget_old_answers(self, now: float) -> None:
        """Keep the answers of requests that could be read again after a restart, and no others."""
        if not self.lifecycle.matching:
            return
        oldest_ms = min(self.answers_floor_ms.values(), default=now * 1000)
        self.matcher.forget_answers_before(min(now, oldest_ms / 1000) - LOOKBACK_MARGIN_S)

    def raise_if_fenced(self) -> None:
        if self.lifecycle.phase is Phase.FENCED:
            raise FatalError(self.lifecycle.fenced_reason)

    def log_stats(self, seconds: float) -> None:
        if seconds <= 0:
            return
        evictions = (self.matcher.evicted_waiting, self.matcher.pool.evicted)
        pushed_out, evicted = (now - before for now, before in zip(evictions, self._logged_evictions, strict=True))
        delta = self.counts.minus(self._logged)
        log.info("%s", stats_line(delta, seconds, self.waits_s, self.matcher, pushed_out, evicted))
        self.refusals.flush()
        refused = self.counts.refused_state - self._logged.refused_state
        if refused:
            log.warning(
                "%d refused messages on %s or %s ignored", refused, self.config.driver_topic, self.config.match_topic
            )
        self._logged = replace(self.counts)
        self._logged_evictions = evictions
        self.waits_s = []
