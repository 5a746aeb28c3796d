"""The matcher's Prometheus metrics, read from the service's own counts when scraped (``--metrics-port``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from matcher.service import MatcherService


class MatcherCollector(Collector):
    def __init__(self, service: MatcherService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        counts = service.counts
        pool = service.matcher.pool
        yield CounterMetricFamily(
            "matcher_requests", "Ride requests read (refused ones included).", value=counts.requests
        )
        answers = CounterMetricFamily("matcher_answers", "Answers written, by outcome.", labels=["outcome"])
        answers.add_metric(["matched"], counts.matched)
        answers.add_metric(["no_driver"], counts.no_driver)
        yield answers
        refused = CounterMetricFamily(
            "matcher_refused", "Records refused, by topic and reason.", labels=["topic", "reason"]
        )
        for (topic, reason), count in sorted(service.refusals.counts.items()):
            refused.add_metric([topic, reason], count)
        yield refused
        yield CounterMetricFamily(
            "matcher_dead_letters",
            "Refused requests copied to the dead-letter topic (committed).",
            value=counts.dead_letters,
        )
        yield CounterMetricFamily(
            "matcher_dead_letter_failures",
            "Refused requests that could not be copied to the dead-letter topic.",
            value=counts.dead_letter_failures,
        )
        yield CounterMetricFamily(
            "matcher_drivers_evicted", "Drivers forgotten because MATCHER_MAX_DRIVERS were held.", value=pool.evicted
        )
        yield CounterMetricFamily(
            "matcher_waiting_evicted",
            "Riders answered no_driver early because MATCHER_MAX_WAITING waited.",
            value=service.matcher.evicted_waiting,
        )
        yield CounterMetricFamily("matcher_transactions", "Transactions committed.", value=counts.transactions)
        yield CounterMetricFamily("matcher_errors", "Turns of the loop that failed unexpectedly.", value=service.errors)
        drivers = GaugeMetricFamily("matcher_drivers", "Drivers known, free to match, reserved.", labels=["state"])
        drivers.add_metric(["known"], len(pool.drivers))
        drivers.add_metric(["free"], len(pool.index))
        drivers.add_metric(["reserved"], len(pool.reservations))
        yield drivers
        yield GaugeMetricFamily("matcher_waiting", "Riders waiting for a driver.", value=len(service.matcher.waiting))


def serve_metrics(service: MatcherService, host: str, port: int) -> WSGIServer:
    """Serve /metrics in a thread of prometheus-client's own; ``shutdown()`` the server to stop it."""
    registry = CollectorRegistry()
    registry.register(MatcherCollector(service))
    server, _thread = start_http_server(port, host, registry)
    return server
