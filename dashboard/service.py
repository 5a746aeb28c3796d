"""The dashboard's engine: two Kafka feeds fill the fleet and rider states, a green task ticks frames out.

One :class:`Dashboard` per process, started once whatever the number of browsers: three background
tasks, the driver feed and the ride feed (:class:`dashboard.feed.Feed`, which decode every record
and apply the valid ones to :class:`fleet.state.FleetState` and :class:`fleet.riders.Riders` as
they arrive), and the tick, which broadcasts what changed and once a second sweeps silent drivers,
checks which riders were picked up, sends ``stats`` and ``riders`` and updates the metrics.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask_socketio import SocketIO

from bus.intake import Record
from dashboard.feed import Feed, FeedSpec, FeedStatus
from dashboard.kafka_view import kafka_view
from dashboard.metadata import MetadataWatch
from dashboard.metrics import DashboardMetrics
from dashboard.push import Push
from dashboard.replay import Replays
from dashboard.settings import DashboardSettings
from dashboard.tracks import TrackReads
from fleet import decode, frames
from fleet.riders import ACTIVE, Riders
from fleet.rides import RideMatch, RideRequest
from fleet.schema import Fix
from fleet.state import FleetState
from fleet.throttle import Throttle

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0
LOG_INTERVAL_S = 10.0
# A feed's loop comes round at least every few seconds even when Kafka is down (its probes time
# out after 2 s); this much silence means it is stuck.
CONSUMER_STUCK_S = 30.0
# The driver feed: with kafka-python's 1 byte, a trickle of fixes is fetched a few records at a time:
# at 1,000 fixes/s the fetch round trips took half the dashboard's CPU (13 % of a core, 7 % with 16 KiB,
# which 10,000 fixes/s fill in 10 ms; measured with bench/pipeline.py). The price is at most 50 ms more
# latency, and only for small fleets. Small polls: the feed yields to the web server after each one,
# so these bound how long it holds the other green threads.
DRIVER_FETCH_MIN_BYTES = 16 * 1024
DRIVER_POLL_RECORDS = 1000
# Riders are few: small polls keep each turn of the ride feed short.
RIDE_POLL_RECORDS = 500
RIDE_FETCH_MAX_BYTES = 512 * 1024
# How long GET /api/kafka waits for a fresh look at the cluster when nobody asked lately (less than a look's timeout).
KAFKA_VIEW_WAIT_S = 2.0


class Dashboard:
    """State, feeds, metrics and pushes of one dashboard process."""

    def __init__(self, settings: DashboardSettings, socketio: SocketIO) -> None:
        self.settings = settings
        self.state = FleetState(settings.stale_after_s, settings.drop_after_s, settings.max_drivers)
        self.metrics = DashboardMetrics()
        self.riders = Riders()
        self.feed = Feed(self._driver_spec(), settings.bootstrap_servers, settings.dead_letter, socketio.sleep)
        self.ride_feed = Feed(self._ride_spec(), settings.bootstrap_servers, settings.dead_letter, socketio.sleep)
        self.metrics.watch_feeds(self.feed, self.ride_feed)
        read = (settings.topic, settings.ride_request_topic, settings.ride_match_topic)
        self.metadata = MetadataWatch(
            settings.bootstrap_servers, tuple(dict.fromkeys(read)), settings.metadata_interval_s, socketio.sleep
        )
        self.push = Push(socketio, self.state, settings.topic, self.metrics, self.riders, self.ride_feed_json)
        self.replays = Replays(
            settings,
            socketio.start_background_task,
            socketio.sleep,
            self.push.send,
            self.push.ready,
            self.push.audience.hold,
            self.push.audience.release,
        )
        self.tracks = TrackReads(settings.bootstrap_servers, settings.topic, settings.track_reads, socketio.sleep)
        self.fixes_total = 0
        self.rider_sweep_failures = 0
        self._rider_failure_log = Throttle(LOG_INTERVAL_S * 6)
        self._socketio = socketio
        self._task = None
        self._running = False
        self._interval_fixes = 0
        self._interval_started = time.monotonic()
        self._log_fixes = 0
        self._log_invalid = 0
        self._log_started = time.monotonic()

    def _driver_spec(self) -> FeedSpec:
        topic = self.settings.topic
        return FeedSpec(
            name="driver consumer",
            decoders={topic: decode.FIXES},
            appliers={topic: self.apply_fixes},
            readback_s=self.settings.readback_s,
            required=True,
            missing_hint="(the simulator creates it)",
            dead_letter_topics=frozenset({topic}),
            max_poll_records=DRIVER_POLL_RECORDS,
            fetch_min_bytes=DRIVER_FETCH_MIN_BYTES,
        )

    def _ride_spec(self) -> FeedSpec:
        requests, matches = self.settings.ride_request_topic, self.settings.ride_match_topic
        return FeedSpec(
            name="ride consumer",
            decoders={requests: decode.REQUESTS, matches: decode.MATCHES},
            appliers={requests: self.apply_requests, matches: self.apply_matches},
            readback_s=self.settings.rides_readback_s,
            required=False,
            missing_hint="(the matcher creates them)",
            # Refused requests are the matcher's to dead-letter, exactly once, in its transactions.
            dead_letter_topics=frozenset({matches}),
            read_committed=True,
            max_poll_records=RIDE_POLL_RECORDS,
            fetch_max_bytes=RIDE_FETCH_MAX_BYTES,
        )

    def start(self) -> None:
        """Start the feeds and the tick task; a second call does nothing."""
        if self._task is not None:
            return
        self._running = True
        self._socketio.start_background_task(self.feed.run)
        self._socketio.start_background_task(self.ride_feed.run)
        self._socketio.start_background_task(self.metadata.run)
        self._task = self._socketio.start_background_task(self._run)

    def stop(self) -> None:
        self._running = False
        self.feed.stop()
        self.ride_feed.stop()
        self.metadata.stop()
        self.replays.stop_all()

    def disconnect_clients(self) -> None:
        """Close every Socket.IO connection (at shutdown: the web server waits for open ones)."""
        self.push.disconnect_all()

    # ---- what the feeds hand over, one partition's poll at a time

    def apply_fixes(self, items: list[tuple[Fix, Record]], received_at: float) -> None:
        self.state.apply_batch([(fix, record.partition, record.offset) for fix, record in items], received_at)
        self.metrics.fix_latency.observe_many([received_at - fix.timestamp for fix, _ in items])
        self.metrics.fixes.inc(len(items))
        self.fixes_total += len(items)
        self._interval_fixes += len(items)

    def apply_requests(self, items: list[tuple[RideRequest, Record]], received_at: float) -> None:
        for request, _ in items:
            self.riders.add_request(request, received_at)
        self.metrics.ride_messages.labels(self.settings.ride_request_topic).inc(len(items))

    def apply_matches(self, items: list[tuple[RideMatch, Record]], _received_at: float) -> None:
        for match, _ in items:
            self.riders.add_match(match)
        self.metrics.ride_messages.labels(self.settings.ride_match_topic).inc(len(items))

    # ---- health

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the dashboard consumes, and the details (or the reason it does not)."""
        now = time.monotonic()
        reason = _unhealthy_reason(self.feed, now) or _unhealthy_reason(self.ride_feed, now)
        if reason:
            return False, {"status": "unavailable", "reason": reason}
        status = self.feed.status
        warnings = [
            f"{stats.failed} refused records of {' and '.join(sorted(feed.spec.dead_letter_topics))} could not be "
            f"dead-lettered (latest: {stats.error})"
            for feed in (self.feed, self.ride_feed)
            if (stats := feed.dead_letters).failed
        ]
        return True, {
            "status": "ok",
            "topic": self.settings.topic,
            "bootstrap": self.settings.bootstrap_servers,
            "partitions": [p.partition for p in status.partitions],
            "readback_done": status.readback_done,
            "drivers": len(self.state),
            "clients": len(self.push),
            "last_poll_age_s": round(now - status.heartbeat, 3),
            "feeds": {"drivers": _feed_health(self.feed, now), "rides": _feed_health(self.ride_feed, now)},
            "warnings": warnings,
        }

    def _run(self) -> None:
        tick_s = self.settings.tick_ms / 1000.0
        next_tick = time.monotonic()
        next_stats = next_tick + STATS_INTERVAL_S
        while self._running:
            try:
                second = time.monotonic() >= next_stats
                if second:
                    next_stats += STATS_INTERVAL_S
                self.tick(with_stats=second)
            except Exception:  # one bad tick must not end the pushes for everyone
                log.exception("tick failed")
            next_tick += tick_s
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind: start counting again from now rather than bursting
                next_tick = time.monotonic()
                delay = 0.0
            self._socketio.sleep(delay)

    def tick(self, with_stats: bool = False) -> None:
        """Broadcast what changed since the last tick (and, once a second, the stats)."""
        stats = self.each_second() if with_stats else None
        self.push.tick(time.time(), stats)

    def ride_feed_json(self) -> dict[str, Any]:
        """The ride feed's part of the ``riders`` event: refusals by topic and reason, and its status."""
        invalid: dict[str, dict[str, int]] = {}
        refusals = self.ride_feed.refusals
        for (topic, reason), count in sorted(refusals.counts.items()):
            invalid.setdefault(topic, {})[reason] = count
        status = self.ride_feed.status
        return {
            "invalid": invalid,
            "invalid_total": refusals.total,
            "kafka": {
                "topics": list(self.ride_feed.topics),
                "connected": status.connected,
                "missing": list(status.missing),
                "error": status.error,
            },
        }

    def kafka_json(self) -> dict[str, Any]:
        """``GET /api/kafka``: the cluster's brokers, and per partition of each topic read its replicas and offsets."""
        state = self.metadata.latest(KAFKA_VIEW_WAIT_S)
        positions = (*self.feed.status.partitions, *self.ride_feed.status.partitions)
        return kafka_view(self.metadata.topics, state, positions)

    def _driver_track(self, driver_id: str) -> list[list[float]]:
        driver = self.state.get(driver_id)
        return driver.trail_points() if driver is not None else []

    def each_second(self) -> dict[str, Any]:
        """Sweep silent drivers, update the gauges, log every ten seconds; return the ``stats`` event."""
        now = time.time()
        dropped_before, evicted_before = self.state.dropped, self.state.evicted
        self.state.sweep(now)
        try:
            self.riders.check_pickups(self._driver_track, now)
            self.riders.sweep(now)
        except Exception:  # a bug in the riders' bookkeeping must not cost the fleet its stats
            self.rider_sweep_failures += 1
            if self._rider_failure_log.ready() is not None:
                log.exception("the riders' sweep failed (%d times so far)", self.rider_sweep_failures)
        self.metrics.dropped.inc(self.state.dropped - dropped_before)
        self.metrics.evicted.inc(self.state.evicted - evicted_before)
        stats = self.stats(now)
        for status, count in stats["drivers"].items():
            if status != "total":
                self.metrics.drivers.labels(status).set(count)
        self.metrics.connected.set(1 if stats["kafka"]["connected"] else 0)
        if stats["kafka"]["lag"] is not None:
            self.metrics.lag.set(stats["kafka"]["lag"])
        rider_counts = self.riders.counts(now)
        for state in ACTIVE:
            self.metrics.riders.labels(state).set(rider_counts[state])
        if time.monotonic() - self._log_started >= LOG_INTERVAL_S:
            self._log_rates(stats, rider_counts)
        return stats

    def stats(self, now: float) -> dict[str, Any]:
        """The ``stats`` event of docs/api.md; counts "per second" over the time since the previous call."""
        elapsed = max(time.monotonic() - self._interval_started, 1e-3)
        status = self.feed.status
        invalid = {reason: count for (_, reason), count in self.feed.refusals.counts.items()}
        stats = {
            "v": frames.VERSION,
            "t": now,
            "fixes_per_s": round(self._interval_fixes / elapsed, 1),
            "drivers": self.state.counts(now),
            "invalid": invalid,
            "invalid_total": sum(invalid.values()),
            "evicted": self.state.evicted,
            "dropped": self.state.dropped,
            "kafka": {
                "connected": status.connected,
                "error": status.error,
                "topic": self.settings.topic,
                "partitions": [
                    {"partition": p.partition, "end_offset": p.end_offset, "position": p.position, "lag": p.lag}
                    for p in status.partitions
                ],
                "lag": status.lag,
            },
            "latency_ms": self.metrics.fix_latency.take_percentiles(),
            "clients": len(self.push),
        }
        self._interval_fixes = 0
        self._interval_started = time.monotonic()
        return stats

    def _log_rates(self, stats: dict[str, Any], riders: dict[str, Any]) -> None:
        elapsed = time.monotonic() - self._log_started
        drivers = stats["drivers"]
        log.info(
            "%.0f fixes/s consumed, %d invalid in %.0f s (%d since start), %d drivers (%d stale), lag %s, %d clients%s",
            (self.fixes_total - self._log_fixes) / elapsed,
            stats["invalid_total"] - self._log_invalid,
            elapsed,
            stats["invalid_total"],
            drivers["total"],
            drivers["stale"],
            stats["kafka"]["lag"],
            stats["clients"],
            "" if stats["kafka"]["error"] is None else f"; not consuming: {stats['kafka']['error']}",
        )
        failed = self.feed.dead_letters.failed + self.ride_feed.dead_letters.failed
        if failed:
            log.warning("%d refused records could not be dead-lettered since start", failed)
        self._log_fixes = self.fixes_total
        self._log_invalid = stats["invalid_total"]
        self._log_started = time.monotonic()
        if self.ride_feed.status.partitions:  # no ride topics yet: nothing to say every ten seconds
            log.info(
                "riders: %d waiting, %d with a driver on the way; last minute: %d matched (median %s s), %d no driver",
                riders["waiting"],
                riders["en_route"],
                riders["matched_60s"],
                riders["median_match_s"],
                riders["no_driver_60s"],
            )


def _unhealthy_reason(feed: Feed, now: float) -> str | None:
    """Why a feed makes the dashboard unhealthy: stopped, stuck, or (the driver feed) not consuming."""
    status = feed.status
    if not status.running:
        return f"{feed.spec.name}: {status.error or 'stopped'}"
    silent = now - status.heartbeat
    if silent > CONSUMER_STUCK_S:
        return f"{feed.spec.name} has not come round for {silent:.0f} s"
    if feed.spec.required and (not status.connected or status.error):
        return status.error or f"{feed.spec.name} is not connected"
    return None


def _feed_health(feed: Feed, now: float) -> dict[str, Any]:
    status: FeedStatus = feed.status
    dead_letters = feed.dead_letters
    return {
        "topics": list(feed.topics),
        "connected": status.connected,
        "error": status.error,
        "lag": status.lag,
        "last_poll_age_s": round(now - status.heartbeat, 3),
        "refused": feed.refusals.total,
        "dead_letters": {
            "sent": dead_letters.sent,
            "failed": dead_letters.failed,
            "pending": dead_letters.pending,
            "error": dead_letters.error,
        },
    }
