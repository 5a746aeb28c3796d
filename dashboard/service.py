"""The dashboard's engine: Kafka feeds fill the fleet, rider, zone and alert states, a green task ticks frames out.

One :class:`Dashboard` per process, started once whatever the number of browsers: its background
tasks are four feeds (:class:`dashboard.feed.Feed`, which decode every record and apply the valid
ones as they arrive): drivers into :class:`fleet.state.FleetState`, rides into
:class:`fleet.riders.Riders`, the compacted ``zones`` topic from its beginning into a
:class:`fleet.zones.ZoneTable`, the last hour of ``zone-events`` into a :class:`fleet.alerts.AlertStore`;
the counter of the drivers inside each zone (:class:`dashboard.zones.InsideCounter`); and the tick,
which broadcasts what changed and once a second sweeps silent drivers, checks which riders were
picked up, sends ``stats`` and updates the metrics (``riders``, ``zones`` and ``zone_alerts`` go
when they change).
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
from dashboard.zones import InsideCounter, ZoneWriter, zone_json
from fleet import decode, density, frames
from fleet.alerts import AlertStore
from fleet.riders import ACTIVE, WAITING, Riders
from fleet.rides import RideMatch, RideRequest
from fleet.schema import Fix, Status
from fleet.state import FleetState
from fleet.throttle import Throttle
from fleet.zones import InvalidZone, Zone, ZoneDeleted, ZoneEvent, ZoneTable

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0
LOG_INTERVAL_S = 10.0
# A feed's loop comes round at least every few seconds even when Kafka is down (its probes time
# out after 2 s); this much silence means it is stuck.
CONSUMER_STUCK_S = 30.0
# The driver feed: with kafka-python's 1 byte, a trickle of fixes is fetched a few records at a time:
# at 1,000 fixes/s the fetch round trips took half the dashboard's CPU (13 % of a core, 7 % with 16 KiB;
# measured with bench/pipeline.py). 16 KiB still meant ~120 fetches a second at 10,000 fixes/s; with
# 256 KiB the broker answers every DRIVER_FETCH_MAX_WAIT_MS unless 256 KiB come sooner, and every fetch round
# costs kafka-python ~1.2 ms of CPU (issue 15, docs/benchmarks.md). The wait is one tick: a fetch's fixes go out with
# the next frame, at most one tick later than with 1 byte. Small polls: the feed yields to the web server
# after each one, so these bound how long it holds the other green threads.
DRIVER_FETCH_MIN_BYTES = 256 * 1024
DRIVER_FETCH_MAX_WAIT_MS = 100
DRIVER_POLL_RECORDS = 1000
# Riders are few: small polls keep each turn of the ride feed short.
RIDE_POLL_RECORDS = 500
RIDE_FETCH_MAX_BYTES = 512 * 1024
# Zones are up to ~45 KB each (1,000 vertices): a few per poll keep a turn of the zone feed short.
ZONE_POLL_RECORDS = 50
ZONE_EVENT_POLL_RECORDS = 500
# GET /api/density: one computation per resolution serves every request of the same half second.
DENSITY_CACHE_S = 0.5
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
        self.zones = ZoneTable(settings.zones_max)
        self.alerts = AlertStore()
        self.zone_feed = Feed(self._zone_spec(), settings.bootstrap_servers, settings.dead_letter, socketio.sleep)
        self.alert_feed = Feed(self._alert_spec(), settings.bootstrap_servers, settings.dead_letter, socketio.sleep)
        self.zone_writer = ZoneWriter(settings.bootstrap_servers, settings.zones_topic, self.zones, settings.zones_max)
        self.inside = InsideCounter(self.zones, self.state, socketio.sleep)
        self.zones_changed = 0  # +1 on every change of the zone table
        self.zones_refused = 0  # valid zones the table had no room for (ZONES_MAX)
        self._zones_full_log = Throttle(LOG_INTERVAL_S * 6)
        self._density: dict[int, tuple[float, float, density.Density]] = {}  # resolution: (monotonic, epoch, result)
        self._density_text: dict[tuple[int, bool], tuple[float, str]] = {}  # (resolution, boundary): (monotonic, body)
        self.metrics.watch_feeds(self.feed, self.ride_feed, self.zone_feed, self.alert_feed)
        self.metrics.watch_zones(self)
        read = (settings.topic, settings.ride_request_topic, settings.ride_match_topic)
        self.metadata = MetadataWatch(
            settings.bootstrap_servers, tuple(dict.fromkeys(read)), settings.metadata_interval_s, socketio.sleep
        )
        self.push = Push(
            socketio,
            self.state,
            settings.topic,
            self.metrics,
            self.riders,
            self.ride_feed_json,
            zones=self,
            alerts=self.alerts,
        )
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
            fetch_max_wait_ms=DRIVER_FETCH_MAX_WAIT_MS,
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

    def _zone_spec(self) -> FeedSpec:
        topic = self.settings.zones_topic
        return FeedSpec(
            name="zones consumer",
            decoders={topic: decode.ZONES},
            appliers={topic: self.apply_zones},
            readback_s=0.0,
            from_beginning=True,  # compacted: the whole topic is the zone table
            required=False,
            missing_hint="(the first zone written creates it: POST /api/zones, or the zone processor)",
            # Refused zones are the zone processor's to dead-letter (every process refuses the same ones).
            dead_letter_topics=frozenset(),
            max_poll_records=ZONE_POLL_RECORDS,
        )

    def _alert_spec(self) -> FeedSpec:
        topic = self.settings.zone_events_topic
        return FeedSpec(
            name="alerts consumer",
            decoders={topic: decode.ZONE_EVENTS},
            appliers={topic: self.apply_zone_events},
            readback_s=self.settings.zone_events_readback_s,
            required=False,
            missing_hint="(the zone processor creates it: python -m zones)",
            dead_letter_topics=frozenset({topic}),  # the dashboards are its only readers
            read_committed=True,  # the processor writes in transactions: aborted events never show
            max_poll_records=ZONE_EVENT_POLL_RECORDS,
        )

    def start(self) -> None:
        """Start the feeds and the tick task; a second call does nothing."""
        if self._task is not None:
            return
        self._running = True
        self._socketio.start_background_task(self.feed.run)
        self._socketio.start_background_task(self.ride_feed.run)
        self._socketio.start_background_task(self.zone_feed.run)
        self._socketio.start_background_task(self.alert_feed.run)
        self._socketio.start_background_task(self.inside.run)
        self._socketio.start_background_task(self.metadata.run)
        self._task = self._socketio.start_background_task(self._run)

    def stop(self) -> None:
        self._running = False
        for feed in self.feeds:  # each finishes within a poll: all at once, not one after the other
            feed.ask_to_stop()
        for feed in self.feeds:
            feed.stop()
        self.inside.stop()
        self.zone_writer.close()
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

    def apply_zones(self, items: list[tuple[Zone | ZoneDeleted, Record]], _received_at: float) -> None:
        for message, _ in items:
            if isinstance(message, ZoneDeleted):
                self.zones.remove(message.zone_id)
            else:
                try:
                    self.zones.put(message)
                except InvalidZone:  # too_many_zones: the topic holds more than ZONES_MAX
                    self.zones_refused += 1
                    if self._zones_full_log.ready() is not None:
                        log.warning(
                            "%s holds more than ZONES_MAX=%d zones: %d not shown so far",
                            self.settings.zones_topic,
                            self.settings.zones_max,
                            self.zones_refused,
                        )
                    continue
        self.zones_changed += 1

    def apply_zone_events(self, items: list[tuple[ZoneEvent, Record]], received_at: float) -> None:
        for event, _ in items:
            self.alerts.add(event, received_at)
            self.metrics.zone_events.labels(event.event).inc()

    # ---- zones: the ``zones`` and ``zone_counts`` events and /api/zones

    def version(self) -> int:
        """Changes whenever the zone table does (what the ``zones`` event is sent on)."""
        return self.zones_changed

    def payload(self) -> dict[str, Any]:
        zones = [zone_json(zone, self.inside.get(zone.zone_id)) for zone in self.zones]
        return {"zones": zones, "count": len(zones)}

    def counts_version(self) -> int:
        """Changes whenever a count inside a zone does (what the ``zone_counts`` event is sent on)."""
        return self.inside.version

    def counts_payload(self) -> dict[str, Any]:
        return {"inside": {zone.zone_id: self.inside.get(zone.zone_id).counts_json() for zone in self.zones}}

    def density_text(self, resolution: int, boundary: bool, bbox: density.BBox | None = None) -> str:
        """``GET /api/density``'s body; one encoding per resolution and boundary serves every request of
        the same half second (a page asks once a second). A ``bbox`` (each page's own view) is encoded per
        request from the same counts and the cells' cached texts."""
        if bbox is not None:
            result, updated_at = self.density(resolution)
            return result.to_json_text(updated_at, boundary, bbox)
        key = (resolution, boundary)
        cached = self._density_text.get(key)
        if cached is not None and time.monotonic() - cached[0] < DENSITY_CACHE_S:
            return cached[1]
        result, updated_at = self.density(resolution)
        text = result.to_json_text(updated_at, boundary)
        self._density_text[key] = (time.monotonic(), text)
        return text

    def density(self, resolution: int) -> tuple[density.Density, float]:
        """Available, fresh drivers and waiting riders per H3 cell, and when that was counted (epoch seconds)."""
        cached = self._density.get(resolution)
        if cached is not None and time.monotonic() - cached[0] < DENSITY_CACHE_S:
            return cached[2], cached[1]
        now = time.time()
        fresh_after = now - self.state.stale_after_s
        available = [
            (d.latitude, d.longitude) for d in self.state if d.status == Status.AVAILABLE and d.timestamp >= fresh_after
        ]
        waiting = [(r.latitude, r.longitude) for r in self.riders if r.state == WAITING]
        result = density.density(available, waiting, resolution)
        self._density[resolution] = (time.monotonic(), now, result)
        return result, now

    # ---- health

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the dashboard consumes, and the details (or the reason it does not)."""
        now = time.monotonic()
        reason = next(filter(None, (_unhealthy_reason(feed, now) for feed in self.feeds)), None)
        if reason:
            return False, {"status": "unavailable", "reason": reason}
        status = self.feed.status
        warnings = [
            f"{stats.failed} refused records of {' and '.join(sorted(feed.spec.dead_letter_topics))} could not be "
            f"dead-lettered (latest: {stats.error})"
            for feed in self.feeds
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
            "feeds": {
                "drivers": _feed_health(self.feed, now),
                "rides": _feed_health(self.ride_feed, now),
                "zones": _feed_health(self.zone_feed, now),
                "zone_events": _feed_health(self.alert_feed, now),
            },
            "zones": len(self.zones),
            "warnings": warnings,
        }

    @property
    def feeds(self) -> tuple[Feed, ...]:
        return (self.feed, self.ride_feed, self.zone_feed, self.alert_feed)

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

    def each_second(self) -> dict[str, Any]:
        """Sweep silent drivers, update the gauges, log every ten seconds; return the ``stats`` event."""
        now = time.time()
        dropped_before, evicted_before = self.state.dropped, self.state.evicted
        self.state.sweep(now)
        try:
            self.riders.check_pickups(self.state.trail_of, now)
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
        failed = sum(feed.dead_letters.failed for feed in self.feeds)
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
