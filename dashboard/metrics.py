"""Prometheus metrics of one dashboard process, and the latency figures of the ``stats`` event."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from dashboard.feed import Feed
    from dashboard.service import Dashboard

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Enough values for steady percentiles; past it an interval's further values only feed the histogram.
WINDOW_VALUES = 50_000


class Latencies(Collector):
    """A latency histogram fed many values at once (prometheus-client's observes one at a time, with a lock).

    It also keeps the values of the current interval for percentiles. Everything runs on the one
    green thread that ticks, so no lock is needed.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.window: list[float] = []

    def observe_many(self, values: Iterable[float]) -> None:
        counts = self.counts
        bounds = self.bounds
        window = self.window
        room = WINDOW_VALUES - len(window)
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
            self.total += value
            if room > 0:
                window.append(value)
                room -= 1

    def take_percentiles(self) -> dict[str, float | None]:
        """p50/p95/p99 in milliseconds of the values since the previous call (None when there were none)."""
        values = sorted(self.window)
        self.window = []
        return {f"p{q}": _percentile_ms(values, q) for q in (50, 95, 99)}

    def collect(self) -> Iterator[Metric]:
        cumulative = 0
        buckets = []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self.total)


class ZoneCollector(Collector):
    """The zone table, the counter of drivers inside and the zone writes, read when scraped."""

    def __init__(self, service: Dashboard) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        yield GaugeMetricFamily("dashboard_zones", "Zones held (read from the zones topic).", value=len(service.zones))
        yield CounterMetricFamily(
            "dashboard_zones_refused",
            "Zones read from the topic that did not fit under ZONES_MAX.",
            value=service.zones_refused,
        )
        yield CounterMetricFamily(
            "dashboard_zone_writes",
            "Zones and tombstones written through /api/zones.",
            value=service.zone_writer.written,
        )
        yield GaugeMetricFamily(
            "dashboard_zone_count_seconds",
            "Duration of the latest count of the drivers inside every zone.",
            value=service.inside.last_pass_s,
        )
        yield GaugeMetricFamily(
            "dashboard_zone_alerts_held", "Zone events held for the alert feed.", value=len(service.alerts)
        )


def _percentile_ms(values: list[float], q: int) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1)
    return round(values[index] * 1000.0, 1)


class FeedCollector(Collector):
    """Refusals and dead letters, read from the feeds' own counts when scraped (no second bookkeeping)."""

    def __init__(self, drivers: Feed, rides: Feed, *zones: Feed) -> None:
        self.drivers = drivers
        self.rides = rides
        self.zones = zones  # the zones and zone-events feeds

    def collect(self) -> Iterator[Metric]:
        invalid = CounterMetricFamily(
            "dashboard_invalid_messages", "Refused driver fixes by reason.", labels=["reason"]
        )
        refused = self.drivers.refusals.counts
        for topic, decoder in self.drivers.spec.decoders.items():
            for reason in decoder.reasons:  # every reason shows, at 0, before the first refusal
                invalid.add_metric([reason], refused[(topic, reason)])
        yield invalid
        ride_invalid = CounterMetricFamily(
            "dashboard_invalid_ride_messages", "Refused ride messages by topic and reason.", labels=["topic", "reason"]
        )
        for (topic, reason), count in sorted(self.rides.refusals.counts.items()):
            ride_invalid.add_metric([topic, reason], count)
        yield ride_invalid
        zone_invalid = CounterMetricFamily(
            "dashboard_invalid_zone_messages",
            "Refused records of the zones and zone-events topics by topic and reason.",
            labels=["topic", "reason"],
        )
        for feed in self.zones:
            for (topic, reason), count in sorted(feed.refusals.counts.items()):
                zone_invalid.add_metric([topic, reason], count)
        yield zone_invalid
        stats = [feed.dead_letters for feed in (self.drivers, self.rides, *self.zones)]
        yield CounterMetricFamily(
            "dashboard_dead_letters",
            "Refused records copied to their dead-letter topic (acknowledged by Kafka).",
            value=sum(s.sent for s in stats),
        )
        yield CounterMetricFamily(
            "dashboard_dead_letter_failures",
            "Refused records that could not be copied to their dead-letter topic.",
            value=sum(s.failed for s in stats),
        )
        yield GaugeMetricFamily(
            "dashboard_dead_letters_pending",
            "Refused records on their way to the dead-letter topic.",
            value=sum(s.pending for s in stats),
        )


class DashboardMetrics:
    """The metrics of docs/api.md, in a registry of this process's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.fixes = Counter("dashboard_fixes_consumed", "Valid fixes consumed.", registry=r)
        self.drivers = Gauge("dashboard_drivers", "Drivers held by status, and stale ones.", ["status"], registry=r)
        self.evicted = Counter("dashboard_drivers_evicted", "Drivers evicted by the MAX_DRIVERS bound.", registry=r)
        self.dropped = Counter("dashboard_drivers_dropped", "Drivers dropped after silence.", registry=r)
        self.lag = Gauge("dashboard_consumer_lag_messages", "End offsets minus positions, all partitions.", registry=r)
        self.connected = Gauge("dashboard_kafka_connected", "1 while the consumer reaches Kafka.", registry=r)
        self.frames = Counter("dashboard_frames", "Position frames broadcast.", registry=r)
        self.frames_skipped = Counter("dashboard_frames_skipped", "Frames a slow client skipped.", registry=r)
        self.clients = Gauge("dashboard_connected_clients", "Socket.IO clients connected.", registry=r)
        self.ride_messages = Counter(
            "dashboard_ride_messages_consumed", "Valid ride requests and answers consumed.", ["topic"], registry=r
        )
        self.riders = Gauge("dashboard_riders", "Rides held by state.", ["state"], registry=r)
        self.zone_events = Counter(
            "dashboard_zone_events_consumed", "Valid zone events consumed, by event.", ["event"], registry=r
        )
        self.fix_latency = Latencies("dashboard_fix_latency_seconds", "Fix timestamp to consumed by the dashboard.")
        self.push_latency = Latencies(
            "dashboard_push_latency_seconds", "Fix timestamp to the frame carrying it handed to Socket.IO."
        )
        r.register(self.fix_latency)
        r.register(self.push_latency)
        ProcessCollector(registry=r)

    def watch_feeds(self, drivers: Feed, rides: Feed, *zones: Feed) -> None:
        self.registry.register(FeedCollector(drivers, rides, *zones))

    def watch_zones(self, service: Dashboard) -> None:
        self.registry.register(ZoneCollector(service))

    def render(self) -> bytes:
        return generate_latest(self.registry)
