"""Settings of the matcher: each flag's environment variable and default, declared once here.

Shared ones (KAFKA_BOOTSTRAP_SERVERS, DRIVER_TOPIC, RIDE_REQUEST_TOPIC, RIDE_MATCH_TOPIC,
LOG_LEVEL) live in ``fleet.settings``.
"""

from __future__ import annotations

from fleet.settings import Setting, port_number, positive_float, positive_int
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
    "MATCHER_MAX_RADIUS_KM", 5.0, "A driver farther than this from the rider is never offered.", positive_float
)
CITY_SPEED_KMH = Setting(
    "MATCHER_CITY_SPEED_KMH", 25.0, "Average city speed that turns a distance into an ETA.", positive_float
)
MAX_WAIT_S = Setting(
    "MATCHER_MAX_WAIT_S",
    30.0,
    "How long a request waits for a free driver before its answer is no_driver.",
    positive_float,
)
RESERVATION_TIMEOUT_S = Setting(
    "MATCHER_RESERVATION_TIMEOUT_S",
    30.0,
    "A matched driver is held for its rider until it reports on_trip, or this long if the trip never starts.",
    positive_float,
)
DRIVER_MAX_AGE_S = Setting(
    "MATCHER_DRIVER_MAX_AGE_S", 15.0, "A driver whose latest fix is older than this is not offered.", positive_float
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
