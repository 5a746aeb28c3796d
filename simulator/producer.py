"""The simulator's I/O: pace the fleet against the clock and send every fix to Kafka.

When each fix is due is :class:`simulator.schedule.Schedule`'s (pure); what is said about the run is
:mod:`simulator.report`'s. The loop here sleeps until the next slot is due and sends every slot that
is due. A fix's timestamp is its due time on the wall clock, so position and time always agree: when
the loop runs late the fix is older when it leaves, which the log says, and its speed stays true.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from bus.clients import (
    BOOTSTRAP_TIMEOUT_MS,
    RECONNECT_BACKOFF_MAX_MS,
    abandon,
    close_producer,
    connect,
    ensure_topics,
)
from fleet.schema import Status
from fleet.settings import DRIVER_TOPIC, bootstrap_list
from simulator.dispatch import Dispatch, RiderOptions, open_match_consumer
from simulator.fleet_model import SimulatedFleet
from simulator.report import Delivery, Progress, Totals, Window
from simulator.schedule import LATE_S, Schedule
from simulator.wire import Appender, fix_value, routes

log = logging.getLogger(__name__)

REPORT_EVERY_S = 5.0
PROGRESS_EVERY_S = 0.5
# Sending a burst of due slots yields to the housekeeping (reports, stop checks) this often.
MAX_BURST = 2000
# The loop sleeps at least this long between bursts: at 10,000 fixes/s waking for every 100 us
# slot costs more than the sends, and a fix leaving 2 ms after its due time changes nothing.
TICK_S = 0.002


@dataclass(frozen=True)
class ProducerOptions:
    """Batching knobs; acks=all and idempotence are kafka-python's durable defaults and stay on."""

    # Chosen by bench/simulator_rate.py (docs/benchmarks.md, "Simulator").
    linger_ms: int = 20
    batch_size: int = 131072
    compression: str | None = None

    def kafka_config(self) -> dict:
        return {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "compression_type": self.compression,
        }


@dataclass(frozen=True)
class RunConfig:
    bootstrap: str
    topic: str = DRIVER_TOPIC.default
    partitions: int = 6
    duration_s: float | None = None
    count: int | None = None
    producer: ProducerOptions = ProducerOptions()
    progress: bool = False
    flush_timeout_s: float = 15.0
    riders: RiderOptions = RiderOptions()
    # Seeds where riders ask (not when answers come back: that depends on the clock).
    seed: int = 0


def prepare_topic(config: RunConfig, stop: threading.Event) -> bool:
    """Create the topic if missing, retrying until Kafka answers; False if stopped first."""

    def create() -> bool:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_list(config.bootstrap),
            client_id="simulator-admin",
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )
        try:
            topics = {config.topic: config.partitions}
            if config.riders.per_minute > 0:
                # The matcher creates these too; whoever starts first does, with the same count.
                topics |= dict.fromkeys((config.riders.request_topic, config.riders.match_topic), config.partitions)
            ensure_topics(admin, topics)
        finally:
            admin.close()
        return True

    return bool(connect(create, "simulator admin", config.bootstrap, stop))


def open_producer(config: RunConfig, stop: threading.Event) -> KafkaProducer | None:
    """A producer that already knows the topic's partitions, so the first fix is not late."""

    def create() -> KafkaProducer:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_list(config.bootstrap),
            client_id="simulator",
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            **config.producer.kafka_config(),
        )
        try:
            producer.partitions_for(config.topic)
        except KafkaError:
            producer.close(timeout=0)
            raise
        return producer

    return connect(create, "simulator producer", config.bootstrap, stop)


def run(
    fleet: SimulatedFleet, config: RunConfig, stop: threading.Event, progress_stream: TextIO = sys.stderr
) -> Totals:
    """Send the fleet's fixes until ``stop`` is set, the duration ends or the count is reached."""
    target = fleet.config.target_rate
    if not prepare_topic(config, stop):
        return Totals(0, 0, 0, 0.0, target, connected=False)
    producer = open_producer(config, stop)
    if producer is None:
        return Totals(0, 0, 0, 0.0, target, connected=False)
    dispatch = None
    if config.riders.per_minute > 0:
        consumer = open_match_consumer(config.bootstrap, config.riders.match_topic, stop)
        if consumer is None:
            producer.close(timeout=5)
            return Totals(0, 0, 0, 0.0, target, connected=False)
        run_id = uuid.uuid4().hex[:8]
        dispatch = Dispatch(fleet, config.riders, producer, consumer, random.Random(f"riders-{config.seed}"), run_id)
        log.info(
            "riders: %g requests a minute to %s (ids sim-%s-...), answers read from %s",
            config.riders.per_minute,
            config.riders.request_topic,
            run_id,
            config.riders.match_topic,
        )
    delivery = Delivery()
    progress = Progress(progress_stream) if config.progress else None
    if progress:
        for handler in logging.getLogger().handlers:
            handler.addFilter(progress.filter)
    started = time.monotonic()
    pacer = Pacer(fleet, config, producer, delivery, progress, dispatch)
    try:
        pacer.loop(stop)
    except KeyboardInterrupt:
        log.warning("second signal: stopping at once")
    finally:
        seconds = time.monotonic() - started
        if dispatch is not None:
            dispatch.close()
        finish(producer, delivery, config.flush_timeout_s)
        if progress:
            progress.clear()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(progress.filter)
    windows, skipped_s = tuple(pacer.reports), pacer.schedule.skipped_s
    return Totals(delivery.sent, delivery.acked, delivery.failed, seconds, target, windows=windows, skipped_s=skipped_s)


class Pacer:
    """The send loop: slots on a fixed schedule, sent when due, with reports along the way."""

    def __init__(
        self,
        fleet: SimulatedFleet,
        config: RunConfig,
        producer: KafkaProducer,
        delivery: Delivery,
        progress: Progress | None,
        dispatch: Dispatch | None = None,
    ) -> None:
        self.fleet = fleet
        self.dispatch = dispatch
        self.config = config
        self.producer = producer
        self.delivery = delivery
        self.progress = progress
        self.slot = 0
        self.start = time.monotonic()
        self.schedule = Schedule(self.start, fleet.config.slot_s)
        # Timestamps come from the monotonic schedule anchored once to the wall clock, so an NTP
        # step during the run cannot make one driver's fixes go back in time.
        self.epoch_offset = time.time() - self.start
        self.window = Window(self.start, delivery)
        self.reports: list[dict[str, Any]] = []  # each window's figures, for the summary
        self.next_report = self.start + REPORT_EVERY_S
        self.next_progress = self.start + PROGRESS_EVERY_S
        self.next_late_warning = self.start
        self.lag = 0.0
        # Each driver's key and partition, computed once (open_producer made the producer learn the topic).
        partitions = len(producer.partitions_for(config.topic))
        self.routes = routes(fleet.drivers, partitions)
        self.appender = Appender(producer, config.topic, partitions)

    def loop(self, stop: threading.Event) -> None:
        fleet = self.fleet
        log.info(
            "simulating %d drivers, one fix each every %g s (%s fixes/s) to topic %s at %s",
            fleet.config.drivers,
            fleet.config.interval_s,
            f"{fleet.config.target_rate:,.1f}",
            self.config.topic,
            self.config.bootstrap,
        )
        while not stop.is_set() and not self.finished():
            now = time.monotonic()
            wait = self.schedule.wait(self.slot, now)
            if wait > 0.0:
                self.housekeeping(now)
                stop.wait(min(max(wait, TICK_S), PROGRESS_EVERY_S))
                continue
            self.catch_up(now)
            self.send_due(now)
            self.housekeeping(time.monotonic())
        self.report(time.monotonic())

    def finished(self) -> bool:
        config = self.config
        if config.count is not None and self.delivery.sent >= config.count:
            return True
        return config.duration_s is not None and time.monotonic() - self.start >= config.duration_s

    def catch_up(self, now: float) -> None:
        lag, skipped = self.schedule.catch_up(self.slot, now)
        self.lag = lag
        self.window.max_lag = max(self.window.max_lag, lag)
        if skipped:
            log.warning(
                "cannot keep up: fixes were %.1f s late, skipping ahead (%.1f s skipped in all); "
                "the target of %s fixes/s is more than this machine sends",
                lag,
                self.schedule.skipped_s,
                f"{self.fleet.config.target_rate:,.0f}",
            )
        elif lag > LATE_S and now >= self.next_late_warning:
            self.next_late_warning = now + REPORT_EVERY_S
            log.warning("falling behind: fixes leave %.2f s after they are due", lag)

    def send_due(self, now: float) -> None:
        """Send every slot due by ``now``, at most MAX_BURST of them.

        This is the simulator's hot path (docs/benchmarks.md, "Simulator"): names are bound to locals
        and each fix goes from the driver's state to JSON bytes without a Fix in between.
        """
        step, send, delivery = self.fleet.driver_for_slot, self.appender.send, self.delivery
        on_ack, on_error = delivery.on_ack, delivery.on_error
        routes, drivers = self.routes, len(self.routes)
        count = self.config.count
        epoch_offset = self.epoch_offset
        schedule = self.schedule
        start, slot_s = schedule.start + schedule.skipped_s, schedule.slot_s
        slot = self.slot
        try:
            for _ in range(MAX_BURST):
                due = start + slot * slot_s  # schedule.due(slot), inline
                if due > now or (count is not None and delivery.sent >= count):
                    return
                driver = step(slot)
                key, partition = routes[slot % drivers]
                slot += 1
                if driver is None:
                    continue
                delivery.sent += 1
                try:
                    future = send(fix_value(driver, due + epoch_offset), key, partition)
                except KafkaError as e:
                    on_error(e)
                    continue
                future.add_callback(on_ack)
                future.add_errback(on_error)
        finally:
            self.slot = slot

    def housekeeping(self, now: float) -> None:
        if self.dispatch is not None:
            self.dispatch.tick(now - self.start, now + self.epoch_offset, self.fleet.slot_time(self.slot))
        if now >= self.next_report:
            self.report(now)
        if self.progress and now >= self.next_progress:
            self.next_progress = now + PROGRESS_EVERY_S
            elapsed = max(now - self.start, 1e-9)
            self.progress.draw(self.delivery, self.delivery.sent / elapsed, self.online_rate(), self.lag, elapsed)

    def report(self, now: float) -> None:
        target = self.online_rate()
        line = self.window.line(now, self.delivery, target)
        self.reports.append(self.window.figures(now, self.delivery, target))
        if self.dispatch is not None:
            line += "; " + self.dispatch.summary()
        log.info("%s", line)
        waiting = self.delivery.unconfirmed
        if self.delivery.acked == self.window.acked and waiting and now - self.window.start >= REPORT_EVERY_S:
            log.warning(
                "Kafka acknowledged nothing for %.0f s; %d fixes wait in the producer and are retried "
                "(is the broker at %s down?)",
                now - self.window.start,
                waiting,
                self.config.bootstrap,
            )
        self.window = Window(now, self.delivery)
        self.next_report = now + REPORT_EVERY_S

    def online_rate(self) -> float:
        """Fixes per second expected from the drivers not offline right now."""
        counts = self.fleet.counts()
        return (self.fleet.config.drivers - counts[Status.OFFLINE]) / self.fleet.config.interval_s


def finish(producer: KafkaProducer, delivery: Delivery, timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for the broker to answer for every fix sent, then close.

    Fixes still unanswered then are failed on purpose, so every fix ends acknowledged or failed.
    """
    try:
        producer.flush(timeout=timeout_s)
    except KafkaTimeoutError:
        log.warning(
            "Kafka did not answer for %d fixes within %.0f s; counting them as failed",
            delivery.unconfirmed,
            timeout_s,
        )
        abandon(producer)
    except KeyboardInterrupt:
        log.warning("second signal: not waiting for Kafka; %d unanswered fixes count as failed", delivery.unconfirmed)
        abandon(producer)
    close_producer(producer, 5, "the simulator's producer")
