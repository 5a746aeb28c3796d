"""Settings read from environment variables, declared once with their defaults.

Each process declares its settings with :class:`Setting` in its own ``settings`` module;
shared ones live here. ``os.environ`` is read only through :meth:`Setting.read`, so the
README's configuration table can be checked against the registry in :data:`REGISTRY`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

REGISTRY: dict[str, Setting] = {}


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot use."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default, parser and a one-line description."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    def __post_init__(self) -> None:
        REGISTRY[self.name] = self

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        raw = (os.environ if environ is None else environ).get(self.name)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError as e:
            raise SettingError(f"{self.name}={raw!r} is not valid: {e}") from e


def setting_field(setting: Setting) -> Any:
    """A dataclass field whose default is ``setting``'s and which remembers it (see :func:`read_fields`)."""
    return field(default=setting.default, metadata={"setting": setting})


def read_fields(cls: type, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each :func:`setting_field` of the dataclass ``cls``, read from the environment."""
    return {f.name: f.metadata["setting"].read(environ) for f in fields(cls) if "setting" in f.metadata}


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


KAFKA_BOOTSTRAP_SERVERS = Setting(
    "KAFKA_BOOTSTRAP_SERVERS",
    "localhost:9092",
    "Kafka bootstrap servers, comma-separated. When set, `make demo` and `make test` use that "
    "cluster and start no local broker.",
)
DRIVER_TOPIC = Setting("DRIVER_TOPIC", "driver-location", "Topic of driver location fixes.")
RIDE_REQUEST_TOPIC = Setting("RIDE_REQUEST_TOPIC", "ride-requests", "Topic of riders' ride requests.")
RIDE_MATCH_TOPIC = Setting(
    "RIDE_MATCH_TOPIC", "ride-matches", "Topic of the matcher's answers (read it with read_committed)."
)
LOG_LEVEL = Setting("LOG_LEVEL", "INFO", "Log level of every process (DEBUG, INFO, WARNING).")


def bootstrap_list(servers: str) -> list[str]:
    """Split a comma-separated bootstrap string the way kafka-python wants it."""
    hosts = [s.strip() for s in servers.split(",") if s.strip()]
    if not hosts:
        raise SettingError("no bootstrap server given")
    return hosts


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"{value} is not a positive integer")
    return value


def positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not 0.0 < value < float("inf"):  # also refuses NaN
        raise ValueError(f"{raw} is not a positive number")
    return value


def port_number(raw: str) -> int:
    value = positive_int(raw)
    if value > 65535:
        raise ValueError(f"{value} is not a TCP port (1-65535)")
    return value
