"""Zones: named places on the map (a polygon or a circle), their table, and the events of drivers in them.

A zone is a GeoJSON Feature kept in the compacted topic ``zones`` (key = zone id, a tombstone deletes it):
geometry ``Polygon`` (valid, at most :data:`MAX_VERTICES` vertices) or ``Point`` with
``properties.radius_m`` (a circle of at most :data:`MAX_RADIUS_M`), ``properties.name`` (text), optional
``properties.dwell_s`` (seconds inside before one ``dwell`` event) and ``properties.hysteresis_m`` (how far
outside a driver must be before it has left; :data:`DEFAULT_HYSTERESIS_M`). :func:`parse_zone` is the one
check every writer (the dashboard's ``POST /api/zones``) and reader (the processor, the dashboard's zone
feed through :data:`fleet.decode.ZONES`) applies. Geometry is shapely 2's; this module is pure.

Distances are in metres in a local equirectangular projection centred on each zone: x = east metres,
y = north metres, with the scale of the zone's centre latitude. For a zone of at most ~100 km across at
latitudes within ±:data:`MAX_LATITUDE` the scale changes across the zone by well under 1 % at city
sizes, and the distances that matter (a driver tens of metres from the edge, against ``hysteresis_m``) are
measured next to the edge, where the error is centimetres. An affine projection also keeps containment
exact: a point is inside the projected polygon exactly when it is inside the polygon in degrees. Circles
are measured with the haversine distance to their centre. Zones may not cross the antimeridian.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from shapely import STRtree
from shapely.geometry import Point, Polygon
from shapely.validation import explain_validity

from fleet import schema
from fleet.geo import EARTH_RADIUS_M, haversine_m
from fleet.schema import InvalidMessage

MAX_VERTICES = 1000
MAX_RADIUS_M = 50_000.0
DEFAULT_HYSTERESIS_M = 20.0
MAX_HYSTERESIS_M = 1000.0
MAX_NAME_CHARS = 100
MAX_ZONE_ID_CHARS = 64
MAX_ZONES = 10_000
# Near the poles a degree of longitude shrinks to nothing and the local projection stops being local.
MAX_LATITUDE = 85.0
# A zone of 1,000 vertices written with every digit of its floats is ~45 KB; nothing valid is larger.
MAX_ZONE_BYTES = 64 * 1024
MAX_DWELL_S = 7 * 86_400.0
POLYGON = "polygon"
CIRCLE = "circle"
KINDS = (POLYGON, CIRCLE)
ENTER = "enter"
EXIT = "exit"
DWELL = "dwell"
EVENTS = (ENTER, EXIT, DWELL)
_M_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0

# Why a zone is refused (the dashboard answers 400 with these; the processor dead-letters with them).
NOT_A_FEATURE = "not_a_feature"
BAD_ZONE_ID = "bad_zone_id"
BAD_GEOMETRY = "bad_geometry"
BAD_COORDINATES = "bad_coordinates"
TOO_MANY_VERTICES = "too_many_vertices"
BAD_RADIUS = "bad_radius"
RADIUS_TOO_LARGE = "radius_too_large"
BAD_NAME = "bad_name"
BAD_DWELL = "bad_dwell"
BAD_HYSTERESIS = "bad_hysteresis"
TOO_MANY_ZONES = "too_many_zones"
MISSING_KEY = "missing_key"
ZONE_REASONS = (
    NOT_A_FEATURE,
    BAD_ZONE_ID,
    BAD_GEOMETRY,
    BAD_COORDINATES,
    TOO_MANY_VERTICES,
    BAD_RADIUS,
    RADIUS_TOO_LARGE,
    BAD_NAME,
    BAD_DWELL,
    BAD_HYSTERESIS,
)
# Why a zone-events record is refused.
BAD_EVENT = "bad_event"
BAD_ZONE_NAME = "bad_zone_name"
BAD_SOURCE = "bad_source"

_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class InvalidZone(InvalidMessage):
    """A zone that breaks the contract: ``reason`` is a short code of :data:`ZONE_REASONS` (or
    ``too_many_zones``), ``detail`` a sentence for a person."""


@dataclass(frozen=True)
class Zone:
    """One valid zone. Build it with :func:`parse_zone`."""

    zone_id: str
    name: str
    kind: str  # "polygon" | "circle"
    dwell_s: float | None
    hysteresis_m: float
    feature: dict[str, Any] = field(hash=False, repr=False)  # normalised GeoJSON Feature, id = zone_id
    bounds: tuple[float, float, float, float] = field(repr=False)  # (min_lat, min_lon, max_lat, max_lon)
    # Polygon: the shape in degrees (x = lon, y = lat) and in local metres; circle: centre and radius.
    shape: Any = field(compare=False, repr=False, default=None)
    metric: Any = field(compare=False, repr=False, default=None)
    origin: tuple[float, float] = field(compare=False, repr=False, default=(0.0, 0.0))  # (lat, lon)
    radius_m: float = field(compare=False, repr=False, default=0.0)

    def contains(self, lat: float, lon: float) -> bool:
        """Whether (lat, lon) is inside the zone or on its edge."""
        min_lat, min_lon, max_lat, max_lon = self.bounds
        if not (min_lat <= lat <= max_lat and min_lon <= lon <= max_lon):
            return False
        if self.kind == CIRCLE:
            return haversine_m(self.origin[0], self.origin[1], lat, lon) <= self.radius_m
        return bool(shapely.intersects_xy(self.shape, lon, lat))

    def distance_m(self, lat: float, lon: float) -> float:
        """0.0 inside (or on the edge), else the distance in metres to the nearest point of the zone."""
        if self.kind == CIRCLE:
            return max(0.0, haversine_m(self.origin[0], self.origin[1], lat, lon) - self.radius_m)
        if self.contains(lat, lon):
            return 0.0
        x, y = _project(self.origin, lat, lon)
        return float(shapely.distance(self.metric, Point(x, y)))


@dataclass(frozen=True)
class ZoneDeleted:
    """A tombstone of the ``zones`` topic: the zone with this id is gone."""

    zone_id: str


@dataclass(frozen=True)
class ZoneEvent:
    """A driver entered, left, or stayed ``dwell_s`` in a zone; ``partition``/``offset`` name the fix."""

    driver_id: str
    zone_id: str
    zone_name: str
    event: str  # "enter" | "exit" | "dwell"
    latitude: float
    longitude: float
    timestamp: float
    partition: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {
            "driver_id": self.driver_id,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "event": self.event,
            "latitude": round(self.latitude, schema.COORDINATE_DECIMALS),
            "longitude": round(self.longitude, schema.COORDINATE_DECIMALS),
            "timestamp": self.timestamp,
            "source": {"partition": self.partition, "offset": self.offset},
        }

    to_message = to_json


def new_zone_id() -> str:
    return uuid.uuid4().hex


def encode_zone(zone: Zone) -> bytes:
    """The value of the zone's record in ``zones`` (its key is ``zone.zone_id`` in UTF-8)."""
    return json.dumps(zone.feature, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_event(event: ZoneEvent) -> bytes:
    return json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_zone(feature: Any, zone_id: str | None = None) -> Zone:
    """Check a GeoJSON Feature (already parsed JSON) and return its :class:`Zone`, or raise :class:`InvalidZone`.

    ``zone_id`` (the record's key) wins over the feature's own ``id``; with neither, a fresh id is made.
    """
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise InvalidZone(NOT_A_FEATURE, 'a zone is a GeoJSON object with "type": "Feature"')
    if zone_id is None:
        zone_id = feature.get("id")
        if zone_id is None:
            zone_id = new_zone_id()
    zone_id = _validate_text(zone_id, MAX_ZONE_ID_CHARS, BAD_ZONE_ID, "zone id", allow_int=True)
    properties = feature.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise InvalidZone(NOT_A_FEATURE, '"properties" is not an object')
    if "name" not in properties:
        raise InvalidZone(BAD_NAME, "properties.name is required")
    name = _validate_text(properties["name"], MAX_NAME_CHARS, BAD_NAME, "properties.name").strip()
    if not name:
        raise InvalidZone(BAD_NAME, "properties.name is blank")
    dwell_s = properties.get("dwell_s")
    if dwell_s is not None:
        dwell_s = _number(dwell_s, 0.0, MAX_DWELL_S, BAD_DWELL, "properties.dwell_s")
    hysteresis = properties.get("hysteresis_m")
    hysteresis_m = (
        DEFAULT_HYSTERESIS_M
        if hysteresis is None
        else _number(hysteresis, 0.0, MAX_HYSTERESIS_M, BAD_HYSTERESIS, "properties.hysteresis_m")
    )
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        raise InvalidZone(BAD_GEOMETRY, '"geometry" is not an object')
    kind = geometry.get("type")
    normal: dict[str, Any] = {"name": name, "hysteresis_m": hysteresis_m}
    if dwell_s is not None:
        normal["dwell_s"] = dwell_s
    common = {"zone_id": zone_id, "name": name, "dwell_s": dwell_s, "hysteresis_m": hysteresis_m}
    if kind == "Point":
        return _circle(geometry, properties, normal, common)
    if kind == "Polygon":
        return _polygon(geometry, normal, common)
    raise InvalidZone(BAD_GEOMETRY, f"geometry type {schema._short(kind)} is not Polygon or Point (a circle)")


def _circle(
    geometry: dict[str, Any], properties: dict[str, Any], normal: dict[str, Any], common: dict[str, Any]
) -> Zone:
    lat, lon = _position(geometry.get("coordinates"))
    if "radius_m" not in properties:
        raise InvalidZone(BAD_RADIUS, "a Point zone is a circle and needs properties.radius_m")
    radius_m = _number(properties["radius_m"], 0.0, math.inf, BAD_RADIUS, "properties.radius_m")
    if radius_m <= 0.0:
        raise InvalidZone(BAD_RADIUS, "properties.radius_m must be above 0")
    if radius_m > MAX_RADIUS_M:
        raise InvalidZone(RADIUS_TOO_LARGE, f"radius {radius_m:.0f} m is over the limit of {MAX_RADIUS_M:.0f} m")
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    dlon = dlat / math.cos(math.radians(lat))
    bounds = (lat - dlat, lon - dlon, lat + dlat, lon + dlon)
    if bounds[1] < -180.0 or bounds[3] > 180.0:
        raise InvalidZone(BAD_GEOMETRY, "the circle crosses the antimeridian (longitude ±180), which zones may not")
    feature = {
        "type": "Feature",
        "id": common["zone_id"],
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {**normal, "radius_m": radius_m},
    }
    return Zone(kind=CIRCLE, feature=feature, bounds=bounds, origin=(lat, lon), radius_m=radius_m, **common)


def _polygon(geometry: dict[str, Any], normal: dict[str, Any], common: dict[str, Any]) -> Zone:
    rings = geometry.get("coordinates")
    if not isinstance(rings, list) or not rings or not all(isinstance(r, list) for r in rings):
        raise InvalidZone(BAD_GEOMETRY, "Polygon coordinates are not a list of rings")
    vertices = sum(max(0, len(ring) - 1) for ring in rings)
    if vertices > MAX_VERTICES:
        raise InvalidZone(TOO_MANY_VERTICES, f"{vertices} vertices, limit {MAX_VERTICES}")
    clean: list[list[list[float]]] = []
    for n, ring in enumerate(rings):
        points = [_position(p) for p in ring]
        if len(points) < 4:
            raise InvalidZone(BAD_GEOMETRY, f"ring {n} has {len(points)} positions; a closed ring needs at least 4")
        if points[0] != points[-1]:
            raise InvalidZone(BAD_GEOMETRY, f"ring {n} is not closed (its last position differs from its first)")
        clean.append([[lon, lat] for lat, lon in points])
    shape = Polygon(clean[0], clean[1:])
    if not shape.is_valid:
        raise InvalidZone(BAD_GEOMETRY, f"invalid polygon: {explain_validity(shape)}"[:300])
    if shape.area <= 0.0:
        raise InvalidZone(BAD_GEOMETRY, "the polygon has no area")
    min_lon, min_lat, max_lon, max_lat = shape.bounds
    if max_lon - min_lon > 180.0:
        raise InvalidZone(BAD_GEOMETRY, "the polygon spans over 180 degrees of longitude (zones may not cross ±180)")
    origin = ((min_lat + max_lat) / 2.0, (min_lon + max_lon) / 2.0)
    kx = _M_PER_DEG * math.cos(math.radians(origin[0]))
    # x = (lon - lon0) * kx, y = (lat - lat0) * ky: an affine map, so shapely does it in C.
    metric = shapely.affinity.affine_transform(
        shape, [kx, 0.0, 0.0, _M_PER_DEG, -origin[1] * kx, -origin[0] * _M_PER_DEG]
    )
    shapely.prepare(shape)
    feature = {
        "type": "Feature",
        "id": common["zone_id"],
        "geometry": {"type": "Polygon", "coordinates": clean},
        "properties": normal,
    }
    return Zone(
        kind=POLYGON,
        feature=feature,
        bounds=(min_lat, min_lon, max_lat, max_lon),
        shape=shape,
        metric=metric,
        origin=origin,
        **common,
    )


def _project(origin: tuple[float, float], lat: float, lon: float) -> tuple[float, float]:
    kx = _M_PER_DEG * math.cos(math.radians(origin[0]))
    return (lon - origin[1]) * kx, (lat - origin[0]) * _M_PER_DEG


def _position(value: Any) -> tuple[float, float]:
    """A GeoJSON position [lon, lat] (an altitude after them is ignored) as (lat, lon)."""
    if not isinstance(value, list) or not 2 <= len(value) <= 3:
        raise InvalidZone(BAD_COORDINATES, f"position {schema._short(value)} is not [longitude, latitude]")
    lon = _number(value[0], -180.0, 180.0, BAD_COORDINATES, "longitude")
    lat = _number(value[1], -MAX_LATITUDE, MAX_LATITUDE, BAD_COORDINATES, "latitude")
    return lat, lon


def _number(value: Any, low: float, high: float, reason: str, what: str) -> float:
    try:
        return schema.finite_number(value, low, high, reason, what)
    except InvalidMessage as e:
        raise InvalidZone(e.reason, e.detail) from None


def _validate_text(value: Any, limit: int, reason: str, what: str, allow_int: bool = False) -> str:
    if allow_int and type(value) is int and -(10**limit) < value < 10**limit:
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidZone(reason, f"{what} {schema._short(value)} is not text of 1-{limit} characters")
    forbidden = _FORBIDDEN_CHARS.search(value)
    if forbidden is not None:
        raise InvalidZone(reason, f"{what} holds U+{ord(forbidden.group()):04X} (a control character or surrogate)")
    return value


def decode_zone(key: bytes | None, value: bytes | None) -> Zone | ZoneDeleted:
    """A record of ``zones``: the key is the zone id, a value a Feature, no value a deletion."""
    if key is None:
        raise InvalidMessage(MISSING_KEY, "a zones record needs the zone id as its key")
    try:
        zone_id = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidZone(BAD_ZONE_ID, f"key of {len(key)} bytes is not UTF-8") from None
    zone_id = _validate_text(zone_id, MAX_ZONE_ID_CHARS, BAD_ZONE_ID, "zone id")
    if value is None:
        return ZoneDeleted(zone_id)
    return parse_zone(schema.decode_object(value, MAX_ZONE_BYTES), zone_id)


def parse_event(key: bytes | None, value: bytes | None, now: float) -> ZoneEvent:
    """A record of ``zone-events``."""
    message = schema.decode_object(value)
    for name in ("driver_id", "zone_id", "zone_name", "event", "latitude", "longitude", "timestamp", "source"):
        if name not in message:
            raise InvalidMessage(schema.MISSING_FIELD, f"no {name!r}")
    driver_id = schema.validate_id(message["driver_id"], schema.BAD_DRIVER_ID, "driver_id")
    schema.check_key(key, driver_id)
    event = message["event"]
    if not isinstance(event, str) or event not in EVENTS:
        raise InvalidMessage(BAD_EVENT, f"event {schema._short(event)} is not one of {', '.join(EVENTS)}")
    source = message["source"]
    if not isinstance(source, dict) or not all(
        type(source.get(n)) is int and 0 <= source[n] <= schema.MAX_SEQ for n in ("partition", "offset")
    ):
        raise InvalidMessage(BAD_SOURCE, 'source is not {"partition": n, "offset": n}')
    latitude, longitude = schema.validate_coordinates(message["latitude"], message["longitude"])
    return ZoneEvent(
        driver_id=driver_id,
        zone_id=_validate_text(message["zone_id"], MAX_ZONE_ID_CHARS, BAD_ZONE_ID, "zone_id"),
        zone_name=_validate_text(message["zone_name"], MAX_NAME_CHARS, BAD_ZONE_NAME, "zone_name"),
        event=event,
        latitude=latitude,
        longitude=longitude,
        timestamp=schema.validate_timestamp(message["timestamp"], now),
        partition=source["partition"],
        offset=source["offset"],
    )


class ZoneTable:
    """The zones by id, at most ``max_zones``, with an R-tree (shapely's STRtree) over their bounds.

    The tree is immutable, so a change marks it stale and the next query rebuilds it (10,000 zones:
    see ``bench/zones.py`` for the time); between changes a lookup is one tree query and an exact
    test of the few zones whose bounds hold the point.
    """

    def __init__(self, max_zones: int = MAX_ZONES) -> None:
        self.max_zones = max_zones
        self._zones: dict[str, Zone] = {}
        self._tree: STRtree | None = None
        self._order: list[Zone] = []
        self.rebuilds = 0

    def put(self, zone: Zone) -> None:
        if zone.zone_id not in self._zones and len(self._zones) >= self.max_zones:
            raise InvalidZone(TOO_MANY_ZONES, f"the table holds its limit of {self.max_zones} zones")
        self._zones[zone.zone_id] = zone
        self._tree = None

    def remove(self, zone_id: str) -> Zone | None:
        zone = self._zones.pop(zone_id, None)
        if zone is not None:
            self._tree = None
        return zone

    def get(self, zone_id: str) -> Zone | None:
        return self._zones.get(zone_id)

    def __len__(self) -> int:
        return len(self._zones)

    def __iter__(self) -> Iterator[Zone]:
        return iter(list(self._zones.values()))

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._zones

    def containing(self, lat: float, lon: float) -> list[Zone]:
        """The zones that hold (lat, lon), edge included."""
        if not self._zones:
            return []
        hits = self._index().query(Point(lon, lat), predicate="intersects")
        return [z for z in (self._order[i] for i in hits.tolist()) if z.kind == POLYGON or z.contains(lat, lon)]

    def containing_many(self, lats: Sequence[float], lons: Sequence[float]) -> list[list[Zone]]:
        """:meth:`containing` for many points at once: one vectorised tree query for all of them."""
        found: list[list[Zone]] = [[] for _ in range(len(lats))]
        if not self._zones or not found:
            return found
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        hits = self._index().query(points, predicate="intersects")
        order = self._order
        for i, j in zip(hits[0].tolist(), hits[1].tolist(), strict=True):
            zone = order[j]
            if zone.kind == POLYGON or zone.contains(lats[i], lons[i]):
                found[i].append(zone)
        return found

    def _index(self) -> STRtree:
        """The tree holds each polygon itself and each circle's bounding box: a query with the
        ``intersects`` predicate tests polygons exactly in C, circles are then measured here.
        Measured on 2 cores with 20,000 random points (12-vertex polygons): per point 0.9 us with
        1,000 zones and 7 us with 10,000 heavily overlapping ones (10 hits per point), against 7 us
        and 100 us for a tree of bounding boxes followed by an exact test per candidate in Python."""
        if self._tree is None:
            self._order = list(self._zones.values())
            self._tree = STRtree(
                [
                    z.shape if z.kind == POLYGON else shapely.box(z.bounds[1], z.bounds[0], z.bounds[3], z.bounds[2])
                    for z in self._order
                ]
            )
            self.rebuilds += 1
        return self._tree
