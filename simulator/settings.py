"""Settings of the simulator: each flag's environment variable and default, declared once here."""

from __future__ import annotations

from fleet.geo import AREAS, BBox
from fleet.settings import Setting, parse_bool, positive_float, positive_int


def integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an integer") from None


def number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if value != value:  # NaN: every range check on it would be false, so refuse it here
        raise ValueError(f"{raw!r} is not a number")
    return value


def non_negative_int(raw: str) -> int:
    value = integer(raw)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def non_negative_number(raw: str) -> float:
    value = number(raw)
    if value < 0:
        raise ValueError(f"{raw} is negative")
    if value == float("inf"):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def share(raw: str) -> float:
    value = number(raw)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{raw} is not a share in [0, 1)")
    return value


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


DRIVERS = Setting("SIMULATOR_DRIVERS", 200, "Number of simulated drivers.", positive_int)
INTERVAL = Setting("SIMULATOR_INTERVAL", 1.0, "Seconds between two fixes of one driver.", positive_float)
DURATION = Setting(
    "SIMULATOR_DURATION", None, "Stop after this many seconds (unset: run until Ctrl-C).", positive_float
)
COUNT = Setting("SIMULATOR_COUNT", None, "Stop after sending this many fixes in all (unset: no limit).", positive_int)
PARTITIONS = Setting("SIMULATOR_PARTITIONS", 6, "Partitions of the topic when the simulator creates it.", positive_int)
AREA = Setting("SIMULATOR_AREA", "nyc", f"Named area to drive in: {', '.join(AREAS)}.", area_name)
BBOX = Setting(
    "SIMULATOR_BBOX", None, "Area as MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (instead of the named area).", BBox.parse
)
SEED = Setting("SIMULATOR_SEED", None, "Seed that makes every position of a run reproducible (unset: random).", integer)
ID_PREFIX = Setting("SIMULATOR_ID_PREFIX", "drv-", "Prefix of driver ids (drv-00001, drv-00002, ...).", id_prefix)
FIRST_ID = Setting("SIMULATOR_FIRST_ID", 1, "Number of the first driver id.", non_negative_int)
ON_TRIP_SHARE = Setting("SIMULATOR_ON_TRIP_SHARE", 0.35, "Share of drivers on a trip at any time.", share)
OFFLINE_SHARE = Setting("SIMULATOR_OFFLINE_SHARE", 0.05, "Share of drivers offline (silent) at any time.", share)
MAX_SPEED_KMH = Setting("SIMULATOR_MAX_SPEED_KMH", 60.0, "Top speed of every driver, km/h.", positive_float)
STREET_GRID = Setting(
    "SIMULATOR_STREET_GRID", False, "Drive on a grid of avenues and streets instead of open roads.", parse_bool
)
GRID_BEARING = Setting(
    "SIMULATOR_GRID_BEARING", 29.0, "Bearing of the grid's avenues, degrees from north (Manhattan: 29).", number
)
RIDERS_PER_MINUTE = Setting(
    "SIMULATOR_RIDERS_PER_MINUTE",
    0.0,
    "Ride requests per minute sent to the matcher (Poisson arrivals); matched drivers carry the riders. 0: no riders.",
    non_negative_number,
)
FLUSH_TIMEOUT = Setting(
    "SIMULATOR_FLUSH_TIMEOUT", 15.0, "Seconds to wait at shutdown for Kafka to answer for every fix.", positive_float
)
# Producer batching, chosen by bench/simulator_rate.py (see docs/benchmarks.md).
LINGER_MS = Setting("SIMULATOR_LINGER_MS", 20, "Producer linger.ms: how long a batch waits to fill.", non_negative_int)
BATCH_SIZE = Setting("SIMULATOR_BATCH_SIZE", 131072, "Producer batch.size in bytes per partition.", positive_int)
COMPRESSION = Setting(
    "SIMULATOR_COMPRESSION", None, "Producer compression: none, gzip, snappy, lz4 or zstd.", compression
)
