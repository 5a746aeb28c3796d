"""Settings of the simulator: each environment variable, its default and its flag, declared once here.

The defaults are the pure modules' own (a fleet of :class:`~simulator.fleet_model.FleetConfig`, a
producer of :class:`~simulator.producer.ProducerOptions`...): this module only names them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.geo import AREAS, BBox
from fleet.settings import (
    DRIVER_TOPIC,
    KAFKA_BOOTSTRAP_SERVERS,
    LOG_LEVEL,
    RIDE_MATCH_TOPIC,
    RIDE_REQUEST_TOPIC,
    Setting,
    Settings,
    integer,
    non_negative_float,
    non_negative_int,
    number,
    parse_bool,
    positive_float,
    positive_int,
    setting_field,
    share,
)
from simulator.fleet_model import FleetConfig
from simulator.motion import DrivingStyle
from simulator.producer import ProducerOptions, RunConfig
from simulator.status import StatusMix


def area_name(raw: str) -> str:
    if raw not in AREAS:
        raise ValueError(f"unknown area {raw!r}; choose one of {', '.join(AREAS)} or give --bbox")
    return raw


def id_prefix(raw: str) -> str:
    # Ids end in at least five digits and must stay within the schema's 64 characters.
    if len(raw) > 50:
        raise ValueError(f"prefix of {len(raw)} characters is longer than 50")
    return raw


def compression(raw: str) -> str | None:
    value = raw.strip().lower()
    if value in {"", "none"}:
        return None
    if value not in {"gzip", "snappy", "lz4", "zstd"}:
        raise ValueError(f"{raw!r} is not one of none, gzip, snappy, lz4, zstd")
    return value


DRIVERS = Setting("SIMULATOR_DRIVERS", FleetConfig.drivers, "Number of simulated drivers.", positive_int)
INTERVAL = Setting(
    "SIMULATOR_INTERVAL", FleetConfig.interval_s, "Seconds between two fixes of one driver.", positive_float
)
DURATION = Setting(
    "SIMULATOR_DURATION", None, "Stop after this many seconds (unset: run until Ctrl-C).", positive_float
)
COUNT = Setting("SIMULATOR_COUNT", None, "Stop after sending this many fixes in all (unset: no limit).", positive_int)
PARTITIONS = Setting(
    "SIMULATOR_PARTITIONS", RunConfig.partitions, "Partitions of the topic when the simulator creates it.", positive_int
)
AREA = Setting("SIMULATOR_AREA", "nyc", f"Named area to drive in: {', '.join(AREAS)}.", area_name)
BBOX = Setting(
    "SIMULATOR_BBOX", None, "Area as MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (instead of the named area).", BBox.parse
)
SEED = Setting("SIMULATOR_SEED", None, "Seed that makes every position of a run reproducible (unset: random).", integer)
ID_PREFIX = Setting(
    "SIMULATOR_ID_PREFIX", FleetConfig.id_prefix, "Prefix of driver ids (drv-00001, drv-00002, ...).", id_prefix
)
FIRST_ID = Setting("SIMULATOR_FIRST_ID", FleetConfig.first_id, "Number of the first driver id.", non_negative_int)
ON_TRIP_SHARE = Setting(
    "SIMULATOR_ON_TRIP_SHARE", StatusMix.on_trip_share, "Share of drivers on a trip at any time.", share
)
OFFLINE_SHARE = Setting(
    "SIMULATOR_OFFLINE_SHARE", StatusMix.offline_share, "Share of drivers offline (silent) at any time.", share
)
MAX_SPEED_KMH = Setting(
    "SIMULATOR_MAX_SPEED_KMH", DrivingStyle.max_speed_kmh, "Top speed of every driver, km/h.", positive_float
)
STREET_GRID = Setting(
    "SIMULATOR_STREET_GRID",
    FleetConfig.street_grid,
    "Drive on a grid of avenues and streets instead of open roads.",
    parse_bool,
)
GRID_BEARING = Setting(
    "SIMULATOR_GRID_BEARING",
    FleetConfig.grid_bearing,
    "Bearing of the grid's avenues, degrees from north (Manhattan: 29).",
    number,
)
RIDERS_PER_MINUTE = Setting(
    "SIMULATOR_RIDERS_PER_MINUTE",
    0.0,
    "Ride requests per minute sent to the matcher (Poisson arrivals); matched drivers carry the riders. 0: no riders.",
    non_negative_float,
)
FLUSH_TIMEOUT = Setting(
    "SIMULATOR_FLUSH_TIMEOUT",
    RunConfig.flush_timeout_s,
    "Seconds to wait at shutdown for Kafka to answer for every fix.",
    positive_float,
)
LINGER_MS = Setting(
    "SIMULATOR_LINGER_MS",
    ProducerOptions.linger_ms,
    "Producer linger.ms: how long a batch waits to fill.",
    non_negative_int,
)
BATCH_SIZE = Setting(
    "SIMULATOR_BATCH_SIZE", ProducerOptions.batch_size, "Producer batch.size in bytes per partition.", positive_int
)
COMPRESSION = Setting(
    "SIMULATOR_COMPRESSION",
    ProducerOptions.compression,
    "Producer compression: none, gzip, snappy, lz4 or zstd.",
    compression,
)


@dataclass(frozen=True)
class SimulatorSettings(Settings):
    """Everything the simulator process is configured with (``python -m simulator --help``)."""

    drivers: int = setting_field(DRIVERS, "--drivers", "N")
    interval: float = setting_field(INTERVAL, "--interval", "SECONDS")
    duration: float | None = setting_field(DURATION, "--duration", "SECONDS")
    count: int | None = setting_field(COUNT, "--count", "FIXES")
    bootstrap_servers: str = setting_field(KAFKA_BOOTSTRAP_SERVERS, "--bootstrap-servers", "HOST:PORT[,...]")
    topic: str = setting_field(DRIVER_TOPIC, "--topic", "NAME")
    partitions: int = setting_field(PARTITIONS, "--partitions", "N")
    area: str = setting_field(AREA, "--area", "{" + ",".join(AREAS) + "}")
    bbox: BBox | None = setting_field(BBOX, "--bbox", "MIN_LAT,MIN_LON,MAX_LAT,MAX_LON")
    seed: int | None = setting_field(SEED, "--seed", "N")
    id_prefix: str = setting_field(ID_PREFIX, "--id-prefix", "TEXT")
    first_id: int = setting_field(FIRST_ID, "--first-id", "N")
    on_trip_share: float = setting_field(ON_TRIP_SHARE, "--on-trip-share", "SHARE")
    offline_share: float = setting_field(OFFLINE_SHARE, "--offline-share", "SHARE")
    max_speed_kmh: float = setting_field(MAX_SPEED_KMH, "--max-speed-kmh", "KMH")
    street_grid: bool = setting_field(STREET_GRID, "--street-grid")
    grid_bearing: float = setting_field(GRID_BEARING, "--grid-bearing", "DEGREES")
    riders_per_minute: float = setting_field(RIDERS_PER_MINUTE, "--riders-per-minute", "R")
    request_topic: str = setting_field(RIDE_REQUEST_TOPIC, "--request-topic", "NAME")
    match_topic: str = setting_field(RIDE_MATCH_TOPIC, "--match-topic", "NAME")
    flush_timeout: float = setting_field(FLUSH_TIMEOUT, "--flush-timeout", "SECONDS")
    linger_ms: int = setting_field(LINGER_MS, "--linger-ms", "MS")
    batch_size: int = setting_field(BATCH_SIZE, "--batch-size", "BYTES")
    compression: str | None = setting_field(COMPRESSION, "--compression", "{none,gzip,snappy,lz4,zstd}")
    log_level: str = setting_field(LOG_LEVEL, "--log-level", "LEVEL")
