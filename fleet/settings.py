"""Settings read from environment variables, declared once with their defaults.

Each process declares its settings with :class:`Setting` in its own ``settings`` module (shared ones
live here) and gathers them in a frozen dataclass of ``setting_field``s based on
:class:`Settings`. That one class is the whole story of a process's configuration: ``from_env()``
reads every variable once, its command-line flags are generated from the same fields
(``bus.runtime.settings_parser``), ``with_overrides()`` lays the flags on top, and the result is
passed down; pure modules take plain parameters. ``os.environ`` is read only through
:meth:`Setting.read`, so the README's configuration table can be checked against :data:`REGISTRY`.
Every value parser (validator) lives once, in this module or with the one setting that needs it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from fleet.errors import FleetError

REGISTRY: dict[str, Setting] = {}
S = TypeVar("S", bound="Settings")


class SettingError(FleetError, ValueError):
    """An environment variable holds a value its setting cannot use."""

    exit_code = 2


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default, parser and a one-line description."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    def __post_init__(self) -> None:
        if self.name in REGISTRY:
            raise ValueError(f"the setting {self.name} is declared twice; import it from where it is declared")
        REGISTRY[self.name] = self

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        raw = (os.environ if environ is None else environ).get(self.name)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError as e:
            raise SettingError(f"{self.name}={raw!r} is not valid: {e}") from e


def setting_field(setting: Setting, flag: str | None = None, metavar: str | None = None) -> Any:
    """A dataclass field whose default is ``setting``'s; ``flag`` (``--drivers``) makes it a command-line
    flag too (without one it is read from the environment only: a secret, or a rarely changed knob)."""
    return field(default=setting.default, metadata={"setting": setting, "flag": flag, "metavar": metavar})


def read_fields(cls: type, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each :func:`setting_field` of the dataclass ``cls``, read from the environment."""
    return {f.name: f.metadata["setting"].read(environ) for f in fields(cls) if "setting" in f.metadata}


@dataclass(frozen=True)
class Settings:
    """Base of every process's settings: a frozen dataclass of ``setting_field``s."""

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
        """Read every setting; raises :class:`SettingError` naming the bad variable."""
        return cls(**read_fields(cls, environ))

    def with_overrides(self: S, **overrides: Any) -> S:
        """These settings with the given values; each one given replaces, None included (a flag meaning "none")."""
        return replace(self, **overrides)


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def bootstrap_list(servers: str) -> list[str]:
    """Split a comma-separated bootstrap string the way kafka-python wants it."""
    hosts = [s.strip() for s in servers.split(",") if s.strip()]
    if not hosts:
        raise SettingError("no bootstrap server given")
    return hosts


def bootstrap_servers(raw: str) -> str:
    bootstrap_list(raw)
    return raw.strip()


# ---- value parsers: each raises ValueError with the reason, which Setting.read turns into a SettingError


def integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an integer") from None


def number(raw: str) -> float:
    """A finite number."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):  # NaN fails every range check silently; inf is no setting's value
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def positive_int(raw: str) -> int:
    value = integer(raw)
    if value <= 0:
        raise ValueError(f"{value} is not a positive integer")
    return value


def non_negative_int(raw: str) -> int:
    value = integer(raw)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def positive_float(raw: str) -> float:
    value = number(raw)
    if value <= 0:
        raise ValueError(f"{raw} is not a positive number")
    return value


def non_negative_float(raw: str) -> float:
    value = number(raw)
    if value < 0:
        raise ValueError(f"{raw} is negative")
    return value


def share(raw: str) -> float:
    value = number(raw)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{raw} is not a share in [0, 1)")
    return value


def port_number(raw: str) -> int:
    value = positive_int(raw)
    if value > 65535:
        raise ValueError(f"{value} is not a TCP port (1-65535)")
    return value


def log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"{raw!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return value


KAFKA_BOOTSTRAP_SERVERS = Setting(
    "KAFKA_BOOTSTRAP_SERVERS",
    "localhost:9092",
    "Kafka bootstrap servers, comma-separated. When set, `make demo` and `make test` use that "
    "cluster and start no local broker.",
    bootstrap_servers,
)
DRIVER_TOPIC = Setting("DRIVER_TOPIC", "driver-location", "Topic of driver location fixes.")
RIDE_REQUEST_TOPIC = Setting("RIDE_REQUEST_TOPIC", "ride-requests", "Topic of riders' ride requests.")
RIDE_MATCH_TOPIC = Setting(
    "RIDE_MATCH_TOPIC", "ride-matches", "Topic of the matcher's answers (read it with read_committed)."
)
ZONES_TOPIC = Setting(
    "ZONES_TOPIC", "zones", "Compacted topic of the zones (GeoJSON Features keyed by zone id; a tombstone deletes)."
)
ZONE_EVENTS_TOPIC = Setting(
    "ZONE_EVENTS_TOPIC", "zone-events", "Topic of zone enter/exit/dwell events (read it with read_committed)."
)
ZONES_MAX = Setting(
    "ZONES_MAX",
    10_000,
    "Most zones a dashboard or zone processor holds: POST /api/zones gets 409 once the zones topic holds this many.",
    positive_int,
)
LOG_LEVEL = Setting("LOG_LEVEL", "INFO", "Log level of every process (DEBUG, INFO, WARNING).", log_level)
