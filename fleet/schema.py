"""The driver-location message: what a valid fix is, and how one is encoded.

Key: the driver id as UTF-8. Value: a JSON object with the four classic fields
``driver_id``, ``latitude``, ``longitude``, ``timestamp`` (epoch seconds) and the optional
``heading``, ``speed_kmh``, ``status`` and ``seq``. Unknown fields are ignored, so producers
may add their own. ``docs/api.md`` is the prose version of this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

STATUSES = ("available", "on_trip", "offline")
MAX_DRIVER_ID_CHARS = 64
# A fix is ~200 bytes; anything this large is a mistake, and parsing it would cost the
# consumer time that belongs to the rest of the fleet.
MAX_VALUE_BYTES = 16 * 1024
# GPS clocks drift and hosts disagree by seconds, never by minutes.
MAX_FUTURE_S = 300.0
COORDINATE_DECIMALS = 6

# The reasons a message is refused; the dead-letter header and the metrics use these names.
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
TOO_LARGE = "too_large"
MISSING_FIELD = "missing_field"
BAD_DRIVER_ID = "bad_driver_id"
BAD_LATITUDE = "bad_latitude"
BAD_LONGITUDE = "bad_longitude"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
BAD_HEADING = "bad_heading"
BAD_SPEED = "bad_speed"
BAD_STATUS = "bad_status"
BAD_SEQ = "bad_seq"
REASONS = (
    NOT_JSON, NOT_OBJECT, TOO_LARGE, MISSING_FIELD, BAD_DRIVER_ID, BAD_LATITUDE, BAD_LONGITUDE,
    BAD_TIMESTAMP, FUTURE_TIMESTAMP, BAD_HEADING, BAD_SPEED, BAD_STATUS, BAD_SEQ,
)  # fmt: skip


class InvalidMessage(ValueError):
    """A message that breaks the contract; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Fix:
    """One validated GPS fix of one driver."""

    driver_id: str
    latitude: float
    longitude: float
    timestamp: float
    heading: float | None = None
    speed_kmh: float | None = None
    status: str | None = None
    seq: int | None = None

    def to_message(self) -> dict[str, Any]:
        """The JSON object as it goes on the wire, optional fields only when known."""
        message: dict[str, Any] = {
            "driver_id": self.driver_id,
            "latitude": round(self.latitude, COORDINATE_DECIMALS),
            "longitude": round(self.longitude, COORDINATE_DECIMALS),
            "timestamp": self.timestamp,
        }
        if self.heading is not None:
            message["heading"] = round(self.heading, 1)
        if self.speed_kmh is not None:
            message["speed_kmh"] = round(self.speed_kmh, 1)
        if self.status is not None:
            message["status"] = self.status
        if self.seq is not None:
            message["seq"] = self.seq
        return message


def encode_key(driver_id: str) -> bytes:
    return driver_id.encode("utf-8")


def encode_fix(fix: Fix) -> bytes:
    return json.dumps(fix.to_message(), separators=(",", ":")).encode("utf-8")


def decode_object(value: bytes | None, max_bytes: int = MAX_VALUE_BYTES) -> dict[str, Any]:
    """The JSON object in ``value``, or :class:`InvalidMessage` saying why there is none."""
    if value is None:
        raise InvalidMessage(NOT_JSON, "empty value (tombstone)")
    if len(value) > max_bytes:
        raise InvalidMessage(TOO_LARGE, f"{len(value)} bytes, limit {max_bytes}")
    try:
        message = json.loads(value)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidMessage(NOT_JSON, str(e)) from None
    if not isinstance(message, dict):
        raise InvalidMessage(NOT_OBJECT, f"a JSON {type(message).__name__}, not an object")
    return message


def parse_fix(value: bytes | None, now: float) -> Fix:
    """Decode and validate one driver-location value received at epoch time ``now``."""
    return validate_fix(decode_object(value), now)


def validate_fix(message: dict[str, Any], now: float) -> Fix:
    """Check a decoded driver-location object against the contract."""
    for field in ("driver_id", "latitude", "longitude", "timestamp"):
        if field not in message:
            raise InvalidMessage(MISSING_FIELD, f"no {field!r}")
    fix = Fix(
        driver_id=validate_id(message["driver_id"], BAD_DRIVER_ID, "driver_id"),
        latitude=_finite_in(message["latitude"], -90.0, 90.0, BAD_LATITUDE, "latitude"),
        longitude=_finite_in(message["longitude"], -180.0, 180.0, BAD_LONGITUDE, "longitude"),
        timestamp=validate_timestamp(message["timestamp"], now),
    )
    heading = message.get("heading")
    if heading is not None:
        fix.heading = _finite_in(heading, 0.0, 360.0, BAD_HEADING, "heading")
    speed = message.get("speed_kmh")
    if speed is not None:
        fix.speed_kmh = _finite_in(speed, 0.0, math.inf, BAD_SPEED, "speed_kmh")
    status = message.get("status")
    if status is not None:
        if status not in STATUSES:
            raise InvalidMessage(BAD_STATUS, f"status {_short(status)} is not one of {STATUSES}")
        fix.status = status
    seq = message.get("seq")
    if seq is not None:
        if not _is_int(seq) or seq < 0:
            raise InvalidMessage(BAD_SEQ, f"seq {_short(seq)} is not a non-negative integer")
        fix.seq = seq
    return fix


def validate_id(value: Any, reason: str, field: str) -> str:
    """An id given as a string or an integer, returned as a non-empty string."""
    if _is_int(value):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_DRIVER_ID_CHARS:
        raise InvalidMessage(
            reason, f"{field} {_short(value)} is not a string or integer of 1-{MAX_DRIVER_ID_CHARS} characters"
        )
    return value


def validate_timestamp(value: Any, now: float) -> float:
    timestamp = _finite_in(value, 0.0, math.inf, BAD_TIMESTAMP, "timestamp")
    if timestamp > now + MAX_FUTURE_S:
        raise InvalidMessage(
            FUTURE_TIMESTAMP, f"timestamp {timestamp} is {timestamp - now:.0f} s in the future (epoch seconds expected)"
        )
    return timestamp


def validate_coordinates(latitude: Any, longitude: Any) -> tuple[float, float]:
    return (
        _finite_in(latitude, -90.0, 90.0, BAD_LATITUDE, "latitude"),
        _finite_in(longitude, -180.0, 180.0, BAD_LONGITUDE, "longitude"),
    )


def _finite_in(value: Any, low: float, high: float, reason: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMessage(reason, f"{field} {_short(value)} is not a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidMessage(reason, f"{field} {number} is outside [{low}, {high}]")
    return number


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
