"""Settings of the matcher: each environment variable, its default and its flag, declared once here.

Shared ones (KAFKA_BOOTSTRAP_SERVERS, DRIVER_TOPIC, RIDE_REQUEST_TOPIC, RIDE_MATCH_TOPIC,
LOG_LEVEL) live in ``fleet.settings``; the matching defaults are :mod:`matcher.matching`'s own.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import cached_property

from fleet.settings import (
    DRIVER_TOPIC,
    KAFKA_BOOTSTRAP_SERVERS,
    LOG_LEVEL,
    RIDE_MATCH_TOPIC,
    RIDE_REQUEST_TOPIC,
    Setting,
    Settings,
    port_number,
    positive_float,
    positive_int,
    setting_field,
)
from matcher import matching


def instance_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 200:
        raise ValueError("an instance id is 1-200 characters")
    return value


GROUP_ID = Setting("MATCHER_GROUP_ID", "matcher", "Consumer group of the matchers that share the ride requests.")
INSTANCE_ID = Setting(
    "MATCHER_INSTANCE_ID",
    None,
    "Name of this matcher, unique in its group and the same across its restarts (unset: the host name); "
    "its Kafka transactional id and static group member id.",
    instance_id,
)
MAX_RADIUS_KM = Setting(
    "MATCHER_MAX_RADIUS_KM",
    matching.MatchConfig.max_radius_m / 1000,
    "A driver farther than this from the rider is never offered.",
    positive_float,
)
CITY_SPEED_KMH = Setting(
    "MATCHER_CITY_SPEED_KMH",
    matching.MatchConfig.city_speed_kmh,
    "Average city speed that turns a distance into an ETA.",
    positive_float,
)
MAX_WAIT_S = Setting(
    "MATCHER_MAX_WAIT_S",
    matching.MatchConfig.max_wait_s,
    "How long a request waits for a free driver before its answer is no_driver.",
    positive_float,
)
RESERVATION_TIMEOUT_S = Setting(
    "MATCHER_RESERVATION_TIMEOUT_S",
    matching.MatchConfig.reservation_timeout_s,
    "A matched driver is held for its rider until it reports on_trip, or this long if the trip never starts.",
    positive_float,
)
DRIVER_MAX_AGE_S = Setting(
    "MATCHER_DRIVER_MAX_AGE_S",
    matching.MatchConfig.driver_max_age_s,
    "A driver whose latest fix is older than this is not offered.",
    positive_float,
)
MAX_DRIVERS = Setting(
    "MATCHER_MAX_DRIVERS",
    matching.MAX_DRIVERS,
    "Most drivers the matcher holds; past it the longest-silent one that is not reserved is evicted.",
    positive_int,
)
MAX_WAITING = Setting(
    "MATCHER_MAX_WAITING",
    matching.MAX_WAITING,
    "Most riders waiting for a driver; past it the oldest is answered no_driver at once.",
    positive_int,
)
PARTITIONS = Setting(
    "MATCHER_PARTITIONS", 6, "Partitions of each topic the matcher creates because it is missing.", positive_int
)
COMMIT_INTERVAL_MS = Setting(
    "MATCHER_COMMIT_INTERVAL_MS", 100, "How often answers and offsets are committed, in one transaction.", positive_int
)
LOG_INTERVAL_S = Setting("MATCHER_LOG_INTERVAL_S", 10.0, "Seconds between two statistics lines.", positive_float)
METRICS_PORT = Setting(
    "MATCHER_METRICS_PORT", None, "Port of the matcher's Prometheus metrics at /metrics (unset: none).", port_number
)
METRICS_HOST = Setting(
    "MATCHER_METRICS_HOST", "127.0.0.1", "Address of the metrics endpoint (0.0.0.0: every interface)."
)


@dataclass(frozen=True)
class MatcherSettings(Settings):
    """Everything the matcher process is configured with (``python -m matcher --help``)."""

    bootstrap_servers: str = setting_field(KAFKA_BOOTSTRAP_SERVERS, "--bootstrap-servers", "HOST:PORT[,...]")
    driver_topic: str = setting_field(DRIVER_TOPIC, "--driver-topic", "NAME")
    request_topic: str = setting_field(RIDE_REQUEST_TOPIC, "--request-topic", "NAME")
    match_topic: str = setting_field(RIDE_MATCH_TOPIC, "--match-topic", "NAME")
    group_id: str = setting_field(GROUP_ID, "--group-id", "NAME")
    instance_id: str | None = setting_field(INSTANCE_ID, "--instance-id", "NAME")
    max_radius_km: float = setting_field(MAX_RADIUS_KM, "--max-radius-km", "KM")
    city_speed_kmh: float = setting_field(CITY_SPEED_KMH, "--city-speed-kmh", "KMH")
    max_wait_s: float = setting_field(MAX_WAIT_S, "--max-wait-s", "SECONDS")
    reservation_timeout_s: float = setting_field(RESERVATION_TIMEOUT_S, "--reservation-timeout-s", "SECONDS")
    driver_max_age_s: float = setting_field(DRIVER_MAX_AGE_S, "--driver-max-age-s", "SECONDS")
    max_drivers: int = setting_field(MAX_DRIVERS, "--max-drivers", "N")
    max_waiting: int = setting_field(MAX_WAITING, "--max-waiting", "N")
    partitions: int = setting_field(PARTITIONS, "--partitions", "N")
    commit_interval_ms: int = setting_field(COMMIT_INTERVAL_MS, "--commit-interval-ms", "MS")
    log_interval_s: float = setting_field(LOG_INTERVAL_S, "--log-interval-s", "SECONDS")
    metrics_port: int | None = setting_field(METRICS_PORT, "--metrics-port", "PORT")
    metrics_host: str = setting_field(METRICS_HOST, "--metrics-host", "ADDRESS")
    log_level: str = setting_field(LOG_LEVEL, "--log-level", "LEVEL")

    @cached_property
    def match(self) -> matching.MatchConfig:
        """The pure core's configuration (ValueError when the numbers do not fit together)."""
        return matching.MatchConfig(
            max_radius_m=self.max_radius_km * 1000,
            city_speed_kmh=self.city_speed_kmh,
            max_wait_s=self.max_wait_s,
            reservation_timeout_s=self.reservation_timeout_s,
            driver_max_age_s=self.driver_max_age_s,
            max_drivers=self.max_drivers,
            max_waiting=self.max_waiting,
        )

    @property
    def instance(self) -> str:
        """This matcher's name: the instance id given, else the host name."""
        return self.instance_id or socket.gethostname()

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}.{self.instance}"

    @property
    def commit_interval_s(self) -> float:
        return self.commit_interval_ms / 1000

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where /metrics is served, if anywhere."""
        return (self.metrics_host, self.metrics_port) if self.metrics_port else None
