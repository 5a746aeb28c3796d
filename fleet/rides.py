"""Ride requests and their outcomes: the messages of ``ride-requests`` and ``ride-matches``.

A rider's request goes to ``ride-requests`` keyed by the *area* it was made in (see
:func:`area_of`), so Kafka's default partitioner sends a whole city to one partition and one
matcher instance. The matcher answers each request once on ``ride-matches``, keyed by request
id, with an ``outcome``: ``matched`` (a driver is on the way) or ``no_driver`` (none was free
within the radius before the rider's wait ran out). ``docs/api.md`` is the prose version.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from fleet.geo import AREAS, EARTH_RADIUS_M
from fleet.schema import (
    MISSING_FIELD,
    InvalidMessage,
    check_key,
    decode_object,
    finite_number,
    validate_coordinates,
    validate_id,
    validate_timestamp,
)

MATCHED = "matched"
NO_DRIVER = "no_driver"
OUTCOMES = (MATCHED, NO_DRIVER)

# Reasons a request (or a match) is refused, beside the shared ones of fleet.schema
# (not_json, not_object, too_large, too_deep, missing_field, bad_latitude, bad_longitude,
# bad_timestamp, future_timestamp, and key_mismatch for a match).
BAD_REQUEST_ID = "bad_request_id"
BAD_RIDER_ID = "bad_rider_id"
BAD_OUTCOME = "bad_outcome"
BAD_DRIVER_ID = "bad_driver_id"
BAD_DISTANCE = "bad_distance"
BAD_ETA = "bad_eta"

REQUEST_FIELDS = ("request_id", "rider_id", "latitude", "longitude", "timestamp")
# No two points on Earth are further apart; no drive to a rider takes longer than a day.
MAX_DISTANCE_M = math.pi * EARTH_RADIUS_M
MAX_ETA_S = 86_400

# A named area (fleet.geo.AREAS) is one partition key out to this many degrees beyond its box
# (about 20 km), so a whole city and its suburbs land on one partition.
AREA_MARGIN_DEG = 0.2


@dataclass(slots=True)
class RideRequest:
    """A rider asking for a ride at a point, at a time (epoch seconds)."""

    request_id: str
    rider_id: str
    latitude: float
    longitude: float
    timestamp: float

    def to_message(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "rider_id": self.rider_id,
            "latitude": round(self.latitude, 6),
            "longitude": round(self.longitude, 6),
            "timestamp": self.timestamp,
        }


@dataclass(slots=True)
class RideMatch:
    """The one outcome of a request: a driver on the way, or no driver.

    ``timestamp`` is when the matcher decided; ``requested_at`` is the request's own
    timestamp, so ``timestamp - requested_at`` is the rider's time to match. ``latitude`` and
    ``longitude`` are the pick-up point (the request's). The driver fields are None for
    ``no_driver``.
    """

    request_id: str
    rider_id: str
    outcome: str
    timestamp: float
    requested_at: float
    latitude: float
    longitude: float
    driver_id: str | None = None
    distance_m: float | None = None
    eta_s: int | None = None
    driver_latitude: float | None = None
    driver_longitude: float | None = None

    @property
    def time_to_match_s(self) -> float:
        return max(0.0, self.timestamp - self.requested_at)

    def to_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "request_id": self.request_id,
            "rider_id": self.rider_id,
            "outcome": self.outcome,
            "timestamp": round(self.timestamp, 3),
            "requested_at": self.requested_at,
            "latitude": round(self.latitude, 6),
            "longitude": round(self.longitude, 6),
        }
        if self.outcome == MATCHED:
            if self.distance_m is None or self.driver_latitude is None or self.driver_longitude is None:
                raise ValueError(f"match {self.request_id} has no driver to encode")
            message["driver_id"] = self.driver_id
            message["distance_m"] = round(self.distance_m, 1)
            message["eta_s"] = self.eta_s
            message["driver_latitude"] = round(self.driver_latitude, 6)
            message["driver_longitude"] = round(self.driver_longitude, 6)
        return message


def area_of(latitude: float, longitude: float) -> str:
    """The area a point belongs to: a named city (``nyc``), else a 1-degree tile (``tile:40:-75``)."""
    for name, box in AREAS.items():
        if (
            box.min_lat - AREA_MARGIN_DEG <= latitude <= box.max_lat + AREA_MARGIN_DEG
            and box.min_lon - AREA_MARGIN_DEG <= longitude <= box.max_lon + AREA_MARGIN_DEG
        ):
            return name
    return f"tile:{math.floor(latitude)}:{math.floor(longitude)}"


def request_key(latitude: float, longitude: float) -> bytes:
    """The Kafka key of a request made at this point: its area, UTF-8."""
    return area_of(latitude, longitude).encode("utf-8")


def encode_request(request: RideRequest) -> bytes:
    return _encode(request.to_message())


def match_key(request_id: str) -> bytes:
    return request_id.encode("utf-8")


def encode_match(match: RideMatch) -> bytes:
    return _encode(match.to_message())


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def parse_request(value: bytes | None, now: float) -> RideRequest:
    """Decode and validate one ride-requests value received at epoch time ``now``.

    Its key is the request's area, a routing hint (see :func:`request_key`), not an id: not checked.
    """
    message = decode_object(value)
    _require(message, REQUEST_FIELDS)
    latitude, longitude = validate_coordinates(message["latitude"], message["longitude"])
    return RideRequest(
        request_id=validate_id(message["request_id"], BAD_REQUEST_ID, "request_id"),
        rider_id=validate_id(message["rider_id"], BAD_RIDER_ID, "rider_id"),
        latitude=latitude,
        longitude=longitude,
        timestamp=validate_timestamp(message["timestamp"], now),
    )


def parse_match(value: bytes | None, now: float, key: bytes | None = None) -> RideMatch:
    """Decode and validate one ride-matches record (what the simulator and the map read); its key,
    when it has one, is the request id."""
    message = decode_object(value)
    _require(message, ("request_id", "rider_id", "outcome", "timestamp", "requested_at", "latitude", "longitude"))
    outcome = message["outcome"]
    if not isinstance(outcome, str) or outcome not in OUTCOMES:
        raise InvalidMessage(BAD_OUTCOME, f"outcome {ascii(outcome)[:40]} is not one of {OUTCOMES}")
    latitude, longitude = validate_coordinates(message["latitude"], message["longitude"])
    match = RideMatch(
        request_id=validate_id(message["request_id"], BAD_REQUEST_ID, "request_id"),
        rider_id=validate_id(message["rider_id"], BAD_RIDER_ID, "rider_id"),
        outcome=outcome,
        timestamp=validate_timestamp(message["timestamp"], now),
        requested_at=validate_timestamp(message["requested_at"], now),
        latitude=latitude,
        longitude=longitude,
    )
    if outcome == MATCHED:
        _require(message, ("driver_id", "distance_m", "eta_s", "driver_latitude", "driver_longitude"))
        match.driver_id = validate_id(message["driver_id"], BAD_DRIVER_ID, "driver_id")
        match.distance_m = finite_number(message["distance_m"], 0.0, MAX_DISTANCE_M, BAD_DISTANCE, "distance_m")
        eta = message["eta_s"]
        if type(eta) is not int or not 0 <= eta <= MAX_ETA_S:
            raise InvalidMessage(BAD_ETA, f"eta_s {ascii(eta)[:40]} is not an integer in [0, {MAX_ETA_S}]")
        match.eta_s = eta
        match.driver_latitude, match.driver_longitude = validate_coordinates(
            message["driver_latitude"], message["driver_longitude"]
        )
    check_key(key, match.request_id)
    return match


def commit_metadata(timestamp_ms: int, read_to: int) -> str:
    """What the matcher's committed offset on ride-requests carries: the record time to rewind
    ride-matches from, and how far requests were read (refused ones below it were dead-lettered)."""
    return json.dumps({"ts": timestamp_ms, "read_to": read_to}, separators=(",", ":"))


def parse_commit_metadata(metadata: str | None) -> tuple[int, int]:
    """(timestamp ms, read_to) of a committed offset; (0, 0) when unknown or not ours: rewind fully,
    replay nothing. Total: whatever another client committed, this never raises."""
    if not metadata or len(metadata) > 256:
        return 0, 0
    try:
        data = json.loads(metadata)
        timestamp_ms, read_to = data["ts"], data["read_to"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return 0, 0
    if not all(type(n) is int and 0 <= n < 2**63 for n in (timestamp_ms, read_to)):
        return 0, 0
    return timestamp_ms, read_to


def _require(message: dict[str, Any], fields: tuple[str, ...]) -> None:
    for field in fields:
        if field not in message:
            raise InvalidMessage(MISSING_FIELD, f"no {field!r}")
