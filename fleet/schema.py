"""The driver-location message: what a valid fix is, and how one is encoded.

Key: the driver id as UTF-8, or none (the guide's producer sends none). Value: a JSON object with
the four classic fields ``driver_id``, ``latitude``, ``longitude``, ``timestamp`` (epoch seconds)
and the optional ``heading``, ``speed_kmh``, ``status`` and ``seq``. Unknown fields are ignored, so
producers may add their own. ``docs/api.md`` is the prose version of this module.

The checks here are shared by every message of the project (fixes, ride requests, matches): a
value is bounded in size and nesting before it is parsed, a number is checked for size before it
becomes a float, and text must be Unicode scalar values without control characters. Consumers do
not call these directly: :mod:`fleet.decode` wraps them into the one decode step that never raises.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta


class Status(StrEnum):
    """A driver's status, as the optional ``status`` field of a fix names it."""

    AVAILABLE = "available"
    ON_TRIP = "on_trip"
    OFFLINE = "offline"


STATUSES = tuple(Status)
MAX_DRIVER_ID_CHARS = 64
# A fix is ~200 bytes; anything this large is a mistake, and parsing it would cost the
# consumer time that belongs to the rest of the fleet.
MAX_VALUE_BYTES = 16 * 1024
# A fix is one flat object; producers may add nested fields of their own, but nothing needs more
# than this. Python's parser recurses once per level, so depth is bounded before it runs.
MAX_JSON_DEPTH = 32
# Hosts synchronised by NTP disagree by milliseconds, phones and cheap GPS units by a second or two.
# A fix further ahead than this is refused: held, it would make every real fix after it look older.
# A fix ahead by less is taken as taken now (clamped), so it cannot hold a driver back at all.
MAX_FUTURE_S = 5.0
# seq is a per-driver counter; a smaller one than held is an older fix arriving late, unless the
# fix is this much newer by its timestamp: then the producer restarted and counts from 0 again.
SEQ_RESTART_S = 10.0
MAX_SEQ = 2**63 - 1  # a Java long, like Kafka's own offsets
COORDINATE_DECIMALS = 6

# The reasons a message is refused; the dead-letter header and the metrics use these names.
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
TOO_LARGE = "too_large"
TOO_DEEP = "too_deep"
MISSING_FIELD = "missing_field"
KEY_MISMATCH = "key_mismatch"
BAD_DRIVER_ID = "bad_driver_id"
BAD_LATITUDE = "bad_latitude"
BAD_LONGITUDE = "bad_longitude"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
BAD_HEADING = "bad_heading"
BAD_SPEED = "bad_speed"
BAD_STATUS = "bad_status"
BAD_SEQ = "bad_seq"
# The value parsed as far as JSON goes; these are what every message of the project shares.
SHARED_REASONS = (NOT_JSON, NOT_OBJECT, TOO_LARGE, TOO_DEEP, MISSING_FIELD)
REASONS = (
    *SHARED_REASONS,
    KEY_MISMATCH,
    BAD_DRIVER_ID,
    BAD_LATITUDE,
    BAD_LONGITUDE,
    BAD_TIMESTAMP,
    FUTURE_TIMESTAMP,
    BAD_HEADING,
    BAD_SPEED,
    BAD_STATUS,
    BAD_SEQ,
)

# C0 and C1 controls, and UTF-16 surrogates (valid in JSON as escapes, but not Unicode scalar
# values: they cannot be encoded to UTF-8, so one would break every response that carries it).
_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")
_TOO_DEEP_RUN = re.compile(rb"[\[{]{%d}" % (MAX_JSON_DEPTH + 1))


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
    """The JSON object in ``value``, or :class:`InvalidMessage` saying why there is none.

    Size and nesting are bounded before the parser runs; an integer too long for Python to convert
    (over 4,300 digits) is refused by the parser itself, as ``not_json``.
    """
    if value is None:
        raise InvalidMessage(NOT_JSON, "empty value (tombstone)")
    if len(value) > max_bytes:
        raise InvalidMessage(TOO_LARGE, f"{len(value)} bytes, limit {max_bytes}")
    # A valid fix has one bracket; counting them is cheap, and only a value with many is scanned.
    if value.count(b"{") + value.count(b"[") > MAX_JSON_DEPTH and nests_deeper_than(value, MAX_JSON_DEPTH):
        raise InvalidMessage(TOO_DEEP, f"arrays and objects nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        message = json.loads(value)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidMessage(NOT_JSON, str(e)[:200]) from None
    if not isinstance(message, dict):
        raise InvalidMessage(NOT_OBJECT, f"a JSON {type(message).__name__}, not an object")
    return message


def nests_deeper_than(value: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` deep (brackets in strings not counted).

    Without a Python loop over the bytes: strings are cut out (escaped backslashes and quotes first), the
    brackets kept, then each pass removes every empty pair, one level of nesting. Brackets left after
    ``limit`` passes nest deeper (or never close: invalid JSON either way). A run of ``limit + 1`` opening
    brackets ends it at once. At most ``limit + 1`` passes of C code over at most 16 KiB.
    """
    unescaped = value.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        if _TOO_DEEP_RUN.search(brackets):
            return True
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def parse_fix(value: bytes | None, now: float, key: bytes | None = None) -> Fix:
    """Decode and validate one driver-location record received at epoch time ``now``.

    A record with a key must name the same driver as its body; one without a key is fine.

    The common fix (a string id, numbers in range, the optional fields well formed, not ahead of
    ``now``) takes a fast path: msgspec parses it into a typed struct, checking types and ranges as it
    goes, then a few inline checks; it accepts only what the full checks accept, with the same result.
    Anything else, valid or not, goes through the standard ``json`` and the full checks, so every
    refusal and its reason are theirs. Measured on a slow day of this machine: 2.5 µs a fix with orjson
    and checks in Python, ~1.2 µs this way (bench/fleet_state.py).
    """
    return parse_fix_record(key, value, now)


def parse_fix_record(key: bytes | None, value: bytes | None, now: float) -> Fix:
    """:func:`parse_fix` in the argument order of :class:`fleet.decode.Decoder` (one call less per fix)."""
    fix = _fast_fix(value, now, key) if value is not None else None
    if fix is not None:
        return fix
    fix = validate_fix(decode_object(value), now)
    check_key(key, fix.driver_id)
    return fix


class _PlainFix(msgspec.Struct):
    """A fix as producers usually write it, typed for msgspec, which checks the types and ranges while it
    parses, in C: the fast path's parse. Whatever it refuses goes through the full checks, which name the
    reason; what it takes, the full checks take too, with the same values (msgspec reads an integer for
    a float as ``float()`` does, and a repeated field as its last occurrence, as ``json`` does)."""

    driver_id: Annotated[str, Meta(min_length=1, max_length=MAX_DRIVER_ID_CHARS)]
    latitude: Annotated[float, Meta(ge=-90.0, le=90.0)]
    longitude: Annotated[float, Meta(ge=-180.0, le=180.0)]
    timestamp: Annotated[float, Meta(ge=0.0)]
    heading: Annotated[float, Meta(ge=0.0, le=360.0)] | None = None
    speed_kmh: Annotated[float, Meta(ge=0.0)] | None = None  # msgspec refuses 1e999 rather than make it inf
    status: Literal[tuple(str(status) for status in STATUSES)] | None = None  # type: ignore[valid-type]
    seq: Annotated[int, Meta(ge=0, le=MAX_SEQ)] | None = None


_decode_plain_fix = msgspec.json.Decoder(_PlainFix).decode


def _fast_fix(value: bytes, now: float, key: bytes | None) -> Fix | None:
    """The fix in ``value`` when it is a plain valid one (see :func:`parse_fix`); None for anything else."""
    if len(value) > MAX_VALUE_BYTES or value.count(b"{") + value.count(b"[") > MAX_JSON_DEPTH:
        return None
    try:
        plain = _decode_plain_fix(value)
    except msgspec.MsgspecError:
        return None
    driver_id = plain.driver_id
    if plain.timestamp > now or (key is not None and key != driver_id.encode("utf-8")):
        return None
    if not (driver_id.isascii() and driver_id.isprintable()) and _FORBIDDEN_CHARS.search(driver_id) is not None:
        return None
    return Fix(
        driver_id,
        plain.latitude,
        plain.longitude,
        plain.timestamp,
        plain.heading,
        plain.speed_kmh,
        plain.status,
        plain.seq,
    )


def check_key(key: bytes | None, entity_id: str) -> None:
    """A record's key, when it has one, is the id its body speaks of: nobody moves another's driver."""
    if key is None or key == entity_id.encode("utf-8"):
        return
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    shown = _short(text) if text is not None else f"{len(key)} bytes that are not UTF-8"
    raise InvalidMessage(KEY_MISMATCH, f"key {shown} differs from the id {_short(entity_id)} in the value")


def validate_fix(message: dict[str, Any], now: float) -> Fix:
    """Check a decoded driver-location object against the contract."""
    for field in ("driver_id", "latitude", "longitude", "timestamp"):
        if field not in message:
            raise InvalidMessage(MISSING_FIELD, f"no {field!r}")
    fix = Fix(
        driver_id=validate_id(message["driver_id"], BAD_DRIVER_ID, "driver_id"),
        latitude=finite_number(message["latitude"], -90.0, 90.0, BAD_LATITUDE, "latitude"),
        longitude=finite_number(message["longitude"], -180.0, 180.0, BAD_LONGITUDE, "longitude"),
        timestamp=validate_timestamp(message["timestamp"], now),
    )
    heading = message.get("heading")
    if heading is not None:
        fix.heading = finite_number(heading, 0.0, 360.0, BAD_HEADING, "heading")
    speed = message.get("speed_kmh")
    if speed is not None:
        fix.speed_kmh = finite_number(speed, 0.0, math.inf, BAD_SPEED, "speed_kmh")
    status = message.get("status")
    if status is not None:
        if not isinstance(status, str) or status not in STATUSES:
            raise InvalidMessage(BAD_STATUS, f"status {_short(status)} is not one of {', '.join(STATUSES)}")
        fix.status = status
    seq = message.get("seq")
    if seq is not None:
        if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
            raise InvalidMessage(BAD_SEQ, f"seq {_short(seq)} is not an integer in [0, 2**63)")
        fix.seq = seq
    return fix


def validate_id(value: Any, reason: str, field: str) -> str:
    """An id given as a string or an integer, returned as a non-empty string of printable text."""
    if _is_int(value) and -(10**MAX_DRIVER_ID_CHARS) < value < 10**MAX_DRIVER_ID_CHARS:
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_DRIVER_ID_CHARS:
        raise InvalidMessage(
            reason, f"{field} {_short(value)} is not a string or integer of 1-{MAX_DRIVER_ID_CHARS} characters"
        )
    forbidden = _FORBIDDEN_CHARS.search(value)
    if forbidden is not None:
        raise InvalidMessage(
            reason, f"{field} {_short(value)} holds U+{ord(forbidden.group()):04X} (a control character or surrogate)"
        )
    return value


def validate_timestamp(value: Any, now: float) -> float:
    """Epoch seconds, not more than :data:`MAX_FUTURE_S` ahead of ``now``; a little ahead counts as ``now``."""
    timestamp = finite_number(value, 0.0, math.inf, BAD_TIMESTAMP, "timestamp")
    if timestamp > now:
        if timestamp > now + MAX_FUTURE_S:
            raise InvalidMessage(
                FUTURE_TIMESTAMP,
                f"timestamp {timestamp} is {timestamp - now:.0f} s in the future, limit {MAX_FUTURE_S:.0f} s "
                "(epoch seconds expected)",
            )
        return now
    return timestamp


def validate_coordinates(latitude: Any, longitude: Any) -> tuple[float, float]:
    return (
        finite_number(latitude, -90.0, 90.0, BAD_LATITUDE, "latitude"),
        finite_number(longitude, -180.0, 180.0, BAD_LONGITUDE, "longitude"),
    )


def supersedes(timestamp: float, seq: int | None, held_timestamp: float, held_seq: int | None) -> bool:
    """Whether a fix taken at ``timestamp`` (with ``seq``) may replace the one held for its driver.

    Never an older fix; and when both carry ``seq``, never a smaller one, unless the fix is
    :data:`SEQ_RESTART_S` newer (its producer restarted and counts from 0 again). A fix with the
    same timestamp replaces the held one: callers that re-read records tell repeats by offset.
    """
    if timestamp < held_timestamp:
        return False
    if seq is None or held_seq is None or seq >= held_seq:
        return True
    return timestamp - held_timestamp >= SEQ_RESTART_S


def finite_number(value: Any, low: float, high: float, reason: str, field: str) -> float:
    """A JSON number in [low, high] as a float; any other value (a bool, a string, an integer too
    large for a float, NaN) is refused with ``reason``. An integer's size is checked before use."""
    kind = type(value)
    number: float
    if kind is float:
        number = value
    elif kind is int:
        try:
            number = float(value)
        except OverflowError:
            raise InvalidMessage(reason, f"{field} is an integer of {len(str(value))} digits") from None
    else:
        raise InvalidMessage(reason, f"{field} {_short(value)} is not a number")
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidMessage(reason, f"{field} {number} is outside [{low}, {high}]")
    return number


def _is_int(value: Any) -> bool:
    return type(value) is int


def _short(value: Any, limit: int = 40) -> str:
    """A value for a message: repr, shortened, and ASCII so that no odd character reaches a log or header."""
    if type(value) is int and not -(10**limit) < value < 10**limit:
        return f"<an integer of {len(str(value))} digits>"
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
