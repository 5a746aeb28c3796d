"""Riders over Kafka: send the fleet's ride requests, read the matcher's answers, dispatch drivers.

Runs inside the simulator's paced send loop, with no thread of its own: :meth:`Dispatch.tick`
sends the requests that are due and, every POLL_EVERY_S, takes the answers kafka-python's IO
thread has already fetched (``poll(timeout_ms=0)`` never waits), so the fix schedule is not held
up. Answers are read ``read_committed`` (the matcher writes them in transactions) from every
partition of ``ride-matches``, starting at its end when the simulator starts: earlier answers
belong to other runs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS, RECONNECT_BACKOFF_MAX_MS, connect
from bus.intake import Record, Refusals, take
from bus.lean_fetch import lean_consumer
from fleet import decode
from fleet.decode import Refusal
from fleet.rides import MATCHED, RideMatch, encode_request, request_key
from fleet.settings import RIDE_MATCH_TOPIC, RIDE_REQUEST_TOPIC, bootstrap_list
from simulator.fleet_model import SimulatedFleet
from simulator.rides import RideBook, RiderSchedule

log = logging.getLogger(__name__)

POLL_EVERY_S = 0.1
FORGET_EVERY_S = 10.0
MAX_MATCHES_PER_POLL = 2000


@dataclass(frozen=True)
class RiderOptions:
    per_minute: float = 0.0
    request_topic: str = RIDE_REQUEST_TOPIC.default
    match_topic: str = RIDE_MATCH_TOPIC.default


def open_match_consumer(bootstrap: str, topic: str, stop: threading.Event) -> KafkaConsumer | None:
    """A consumer of every partition of ``topic``, positioned at its end now; None if stopped first."""

    def create() -> KafkaConsumer:
        consumer = lean_consumer(
            bootstrap_servers=bootstrap_list(bootstrap),
            client_id="simulator-matches",
            isolation_level="read_committed",
            enable_auto_commit=False,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )
        try:
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                raise KafkaError(f"topic {topic} has no partitions yet")
            partitions = [TopicPartition(topic, n) for n in sorted(numbers)]
            consumer.assign(partitions)
            consumer.seek_to_end(*partitions)
            # Resolve "the end" now, before the first request leaves: seek_to_end alone is lazy,
            # and an answer written before it resolves would be skipped.
            for tp in partitions:
                consumer.position(tp, timeout_ms=BOOTSTRAP_TIMEOUT_MS)
        except KafkaError:
            consumer.close()
            raise
        return consumer

    return connect(create, "simulator match consumer", bootstrap, stop)


class Dispatch:
    """Requests out, answers in, matched drivers sent on their way."""

    def __init__(
        self,
        fleet: SimulatedFleet,
        options: RiderOptions,
        producer: KafkaProducer,
        consumer: KafkaConsumer,
        rng: random.Random,
        run_id: str,
    ) -> None:
        self.fleet = fleet
        self.options = options
        self.producer = producer
        self.consumer = consumer
        self.rng = rng
        self.book = RideBook(run_id)
        self.schedule = RiderSchedule(options.per_minute, rng)
        self.next_poll = 0.0
        self.next_forget = FORGET_EVERY_S
        self.refusals = Refusals("simulator")

    def tick(self, elapsed: float, timestamp: float, fleet_now: float) -> None:
        """Send the requests due ``elapsed`` seconds into the run, and act on answers that arrived.

        ``timestamp`` is the wall-clock time of the requests, ``fleet_now`` the fleet's time.
        """
        for _ in range(self.schedule.due(elapsed)):
            self.send_request(timestamp, elapsed)
        if elapsed >= self.next_poll:
            self.next_poll = elapsed + POLL_EVERY_S
            self.take_answers(fleet_now)
        if elapsed >= self.next_forget:
            self.next_forget = elapsed + FORGET_EVERY_S
            forgotten = self.book.forget_unanswered(elapsed)
            if forgotten:
                log.warning("%d ride requests got no answer for minutes; is the matcher running?", forgotten)

    def send_request(self, timestamp: float, elapsed: float) -> None:
        request = self.book.new_request(self.fleet.rider_spot(self.rng), timestamp, elapsed)
        try:
            future = self.producer.send(
                self.options.request_topic,
                key=request_key(request.latitude, request.longitude),
                value=encode_request(request),
            )
        except KafkaError as e:
            self.on_request_error(e)
            return
        future.add_errback(self.on_request_error)

    def on_request_error(self, error: BaseException) -> None:
        self.book.counts.request_failures += 1
        log.debug("a ride request was not delivered: %s: %s", type(error).__name__, error)

    def take_answers(self, fleet_now: float) -> None:
        try:
            batches = self.consumer.poll(timeout_ms=0, max_records=MAX_MATCHES_PER_POLL)
        except KafkaError as e:
            log.warning("reading %s failed (%s: %s); retrying", self.options.match_topic, type(e).__name__, e)
            return
        now = time.time()
        for records in batches.values():
            take(
                records,
                decode.MATCHES,
                now,
                lambda items: self.on_answers(items, fleet_now),
                self.on_refused,
            )
        self.refusals.flush()

    def on_refused(self, record: Record, refusal: Refusal) -> None:
        """An answer that breaks the contract (the dashboard dead-letters those), or that made us fail."""
        self.refusals.note(record, refusal)

    def on_answers(self, items: list[tuple[RideMatch, Record]], fleet_now: float) -> None:
        for match, _ in items:
            self.on_answer(match, fleet_now)

    def on_answer(self, match: RideMatch, fleet_now: float) -> None:
        request = self.book.answer(match)
        if request is None:
            return  # another rider's answer, or one already taken
        if match.outcome != MATCHED:
            log.debug("no driver for %s (%s)", match.request_id, match.rider_id)
            return
        ride = self.fleet.assign_ride(match, (request.latitude, request.longitude), fleet_now)
        counts = self.book.counts
        if ride is not None:
            log.debug(
                "%s drives to %s (%.0f m, ETA %d s)", match.driver_id, match.rider_id, match.distance_m, match.eta_s
            )
        elif match.driver_id in self.fleet.by_id:
            counts.busy += 1
            log.warning(
                "%s was matched to %s while still on a ride; the rider is left waiting", match.driver_id, match.rider_id
            )
        else:
            counts.not_ours += 1
            log.debug("%s matched to %s, a driver of another simulator", match.rider_id, match.driver_id)

    def summary(self) -> str:
        counts = self.book.counts
        text = (
            f"rides: requests sent {counts.requested}, matches received {counts.matched}, "
            f"no driver {counts.no_driver}, in progress {self.fleet.rides_in_progress}, "
            f"completed {self.fleet.rides_completed}"
        )
        extra = [
            f"{n} {what}"
            for n, what in (
                (counts.request_failures, "requests not delivered"),
                (counts.not_ours, "matched to drivers of another simulator"),
                (counts.busy, "matched to drivers already on a ride"),
                (self.refusals.total, "refused answers"),
            )
            if n
        ]
        return text + (f" ({', '.join(extra)})" if extra else "")

    def close(self) -> None:
        self.consumer.close()
