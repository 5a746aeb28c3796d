"""Settings of the zone processor: each environment variable, its default and its flag, declared once here.

Shared ones (KAFKA_BOOTSTRAP_SERVERS, DRIVER_TOPIC, ZONES_TOPIC, ZONE_EVENTS_TOPIC, ZONES_MAX, LOG_LEVEL) live in
``fleet.settings``: the dashboard and the processor hold the same zones.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from fleet.settings import (
    DRIVER_TOPIC,
    KAFKA_BOOTSTRAP_SERVERS,
    LOG_LEVEL,
    ZONE_EVENTS_TOPIC,
    ZONES_MAX,
    ZONES_TOPIC,
    Setting,
    Settings,
    non_negative_float,
    parse_bool,
    positive_float,
    positive_int,
    setting_field,
)
from matcher.settings import instance_id

STATE_TOPIC = Setting(
    "ZONES_STATE_TOPIC",
    "zones-state",
    "Compacted changelog of the zone processor: which zones each driver is in (key = driver id).",
)
GROUP_ID = Setting("ZONES_GROUP_ID", "zones", "Consumer group of the zone processors that share driver-location.")
INSTANCE_ID = Setting(
    "ZONES_INSTANCE_ID",
    None,
    "Name of this zone processor, unique in its group and the same across its restarts (unset: the host name); "
    "its Kafka transactional id and static group member id.",
    instance_id,
)
PARTITIONS = Setting(
    "ZONES_PARTITIONS",
    6,
    "Partitions of driver-location and zone-events when the zone processor creates them because they are missing.",
    positive_int,
)
COMMIT_INTERVAL_MS = Setting(
    "ZONES_COMMIT_INTERVAL_MS",
    100,
    "How often zone events, the changelog and the offsets are committed, in one transaction.",
    positive_int,
)
START_LOOKBACK_S = Setting(
    "ZONES_START_LOOKBACK_S",
    60.0,
    "A group without committed offsets starts this many seconds back in driver-location (not at its beginning).",
    non_negative_float,
)
DEAD_LETTER = Setting(
    "ZONES_DEAD_LETTER",
    False,
    "Copy every refused fix to driver-location.dlq too (exactly once, in the transactions); off, as the "
    "dashboard copies them (DASHBOARD_DEAD_LETTER). A fix the processor itself failed on, and every invalid "
    "zone (to zones.dlq), are always copied.",
    parse_bool,
)
LOG_INTERVAL_S = Setting("ZONES_LOG_INTERVAL_S", 10.0, "Seconds between two statistics lines.", positive_float)


@dataclass(frozen=True)
class ZonesSettings(Settings):
    """Everything the zone processor is configured with (``python -m zones --help``)."""

    bootstrap_servers: str = setting_field(KAFKA_BOOTSTRAP_SERVERS, "--bootstrap-servers", "HOST:PORT[,...]")
    driver_topic: str = setting_field(DRIVER_TOPIC, "--driver-topic", "NAME")
    zones_topic: str = setting_field(ZONES_TOPIC, "--zones-topic", "NAME")
    events_topic: str = setting_field(ZONE_EVENTS_TOPIC, "--events-topic", "NAME")
    state_topic: str = setting_field(STATE_TOPIC, "--state-topic", "NAME")
    group_id: str = setting_field(GROUP_ID, "--group-id", "NAME")
    instance_id: str | None = setting_field(INSTANCE_ID, "--instance-id", "NAME")
    max_zones: int = setting_field(ZONES_MAX, "--zones-max", "N")
    partitions: int = setting_field(PARTITIONS, "--partitions", "N")
    commit_interval_ms: int = setting_field(COMMIT_INTERVAL_MS, "--commit-interval-ms", "MS")
    start_lookback_s: float = setting_field(START_LOOKBACK_S, "--start-lookback-s", "SECONDS")
    dead_letter: bool = setting_field(DEAD_LETTER)
    log_interval_s: float = setting_field(LOG_INTERVAL_S, "--log-interval-s", "SECONDS")
    log_level: str = setting_field(LOG_LEVEL, "--log-level", "LEVEL")

    @property
    def instance(self) -> str:
        """This processor's name: the instance id given, else the host name."""
        return self.instance_id or socket.gethostname()

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}.{self.instance}"

    @property
    def commit_interval_s(self) -> float:
        return self.commit_interval_ms / 1000
