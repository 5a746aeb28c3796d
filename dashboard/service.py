"""The dashboard's engine: the Kafka feeds fill the fleet and rider states, a green task ticks frames out.

One :class:`Dashboard` per process, started once whatever the number of browsers: three background
tasks, the driver consumer (:class:`dashboard.feed.KafkaFeed`), the ride consumer
(:class:`dashboard.ride_feed.RideFeed`) and the tick, which drains both consumers' batches into the
states, broadcasts what changed, and once a second sweeps silent drivers, checks which riders
were picked up, sends ``stats`` and ``riders`` and updates the metrics.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from flask_socketio import SocketIO

from dashboard.feed import FeedStatus, KafkaFeed
from dashboard.metrics import DashboardMetrics
from dashboard.ride_feed import RideFeed
from dashboard.rider_push import RiderPush
from dashboard.settings import DashboardSettings
from fleet import frames
from fleet.riders import ACTIVE, Riders
from fleet.state import FleetState

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0
LOG_INTERVAL_S = 10.0
# The consumer loop comes round at least every few seconds even when Kafka is down (its probes time
# out after 2 s); this much silence means it is stuck.
CONSUMER_STUCK_S = 30.0


class Dashboard:
    """State, feed, metrics and pushes of one dashboard process."""

    def __init__(self, settings: DashboardSettings, socketio: SocketIO) -> None:
        self.settings = settings
        self.state = FleetState(settings.stale_after_s, settings.drop_after_s, settings.max_drivers)
        self.metrics = DashboardMetrics()
        self.feed = KafkaFeed(settings, sleep=socketio.sleep)
        self.riders = Riders()
        self.ride_feed = RideFeed(settings, sleep=socketio.sleep)
        self.push = RiderPush(socketio, self.state, settings.topic, self.metrics, self.riders, self.ride_feed_json)
        self.invalid: Counter[str] = Counter()
        self.ride_invalid: Counter[tuple[str, str]] = Counter()  # (topic, reason)
        self.fixes_total = 0
        self._socketio = socketio
        self._task = None
        self._running = False
        self._interval_fixes = 0
        self._interval_started = time.monotonic()
        self._log_fixes = 0
        self._log_invalid = 0
        self._log_started = time.monotonic()

    def start(self) -> None:
        """Start the consumer task and the tick task; a second call does nothing."""
        if self._task is not None:
            return
        self._running = True
        self._socketio.start_background_task(self.feed.run)
        self._socketio.start_background_task(self.ride_feed.run)
        self._task = self._socketio.start_background_task(self._run)

    def stop(self) -> None:
        self._running = False
        self.feed.stop()
        self.ride_feed.stop()

    def disconnect_clients(self) -> None:
        """Close every Socket.IO connection (at shutdown: the web server waits for open ones)."""
        self.push.disconnect_all()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the dashboard consumes, and the details (or the reason it does not)."""
        status = self.feed.status
        reason = _unhealthy_reason(status, time.monotonic())
        if reason:
            return False, {"status": "unavailable", "reason": reason}
        return True, {
            "status": "ok",
            "topic": self.settings.topic,
            "bootstrap": self.settings.bootstrap_servers,
            "partitions": [p.partition for p in status.partitions],
            "readback_done": status.readback_done,
            "drivers": len(self.state),
            "clients": len(self.push),
            "last_poll_age_s": round(time.monotonic() - status.heartbeat, 3),
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
        """Take the consumers' batches into the states, then broadcast the changes (and the stats)."""
        self.ingest()
        self.ingest_rides()
        stats = self.each_second() if with_stats else None
        self.push.tick(time.time(), stats)

    def ingest(self) -> int:
        taken = 0
        for batch in self.feed.drain():
            taken += self.state.apply_batch(batch.fixes, batch.received_at)
            received = batch.received_at
            self.metrics.fix_latency.observe_many([received - fix.timestamp for fix, _, _ in batch.fixes])
            self.metrics.fixes.inc(len(batch.fixes))
            self.fixes_total += len(batch.fixes)
            self._interval_fixes += len(batch.fixes)
            for reason, count in batch.invalid.items():
                self.invalid[reason] += count
                self.metrics.invalid.labels(reason).inc(count)
            self.metrics.dead_letters.inc(batch.dead_lettered)
        return taken

    def ingest_rides(self) -> None:
        """Take the ride consumer's batches into the riders (after the fixes, for the pick-up checks)."""
        for batch in self.ride_feed.drain():
            now = batch.received_at
            for request in batch.requests:
                self.riders.add_request(request, now)
            for match in batch.matches:
                self.riders.add_match(match)
            self.metrics.ride_messages.labels(self.settings.ride_request_topic).inc(len(batch.requests))
            self.metrics.ride_messages.labels(self.settings.ride_match_topic).inc(len(batch.matches))
            for (topic, reason), count in batch.invalid.items():
                self.ride_invalid[(topic, reason)] += count
                self.metrics.ride_invalid.labels(topic, reason).inc(count)
            self.metrics.dead_letters.inc(batch.dead_lettered)

    def ride_feed_json(self) -> dict[str, Any]:
        """The ride consumer's part of the ``riders`` event: refusals by topic and reason, and its status."""
        invalid: dict[str, dict[str, int]] = {}
        for (topic, reason), count in sorted(self.ride_invalid.items()):
            invalid.setdefault(topic, {})[reason] = count
        status = self.ride_feed.status
        return {
            "invalid": invalid,
            "invalid_total": sum(self.ride_invalid.values()),
            "kafka": {
                "topics": list(self.ride_feed.topics),
                "connected": status.connected,
                "missing": list(status.missing),
                "error": status.error,
            },
        }

    def _driver_track(self, driver_id: str) -> list[list[float]]:
        driver = self.state.get(driver_id)
        return driver.trail_points() if driver is not None else []

    def each_second(self) -> dict[str, Any]:
        """Sweep silent drivers, update the gauges, log every ten seconds; return the ``stats`` event."""
        now = time.time()
        dropped_before, evicted_before = self.state.dropped, self.state.evicted
        self.state.sweep(now)
        self.riders.check_pickups(self._driver_track, now)
        self.riders.sweep(now)
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
        stats = {
            "v": frames.VERSION,
            "t": now,
            "fixes_per_s": round(self._interval_fixes / elapsed, 1),
            "drivers": self.state.counts(now),
            "invalid": dict(self.invalid),
            "invalid_total": sum(self.invalid.values()),
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
        self._log_fixes = self.fixes_total
        self._log_invalid = stats["invalid_total"]
        self._log_started = time.monotonic()
        if self.ride_feed.status.partitions:  # no ride topics yet: nothing to say every ten seconds
            log.info(
                "riders: %d waiting, %d with a driver on the way; last minute: %d matched (median %s s), %d no driver",
                riders["waiting"], riders["en_route"], riders["matched_60s"], riders["median_match_s"],
                riders["no_driver_60s"],
            )  # fmt: skip


def _unhealthy_reason(status: FeedStatus, now: float) -> str | None:
    if not status.running:
        return status.error or "consumer stopped"
    if not status.connected:
        return status.error
    silent = now - status.heartbeat
    if silent > CONSUMER_STUCK_S:
        return f"consumer has not come round for {silent:.0f} s"
    return status.error
