"""Geometry on the WGS84 sphere: distances, bearings, moving a point, and named areas."""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def destination(lat: float, lon: float, bearing: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` metres from (lat, lon) along ``bearing`` degrees."""
    d = distance_m / EARTH_RADIUS_M
    b = math.radians(bearing)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


@dataclass(frozen=True)
class BBox:
    """A latitude/longitude box; ``min_*`` <= ``max_*`` is checked on creation."""

    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float

    def __post_init__(self) -> None:
        for name in ("min_lat", "max_lat"):
            if not -90.0 <= getattr(self, name) <= 90.0:
                raise ValueError(f"{name} {getattr(self, name)} is outside [-90, 90]")
        for name in ("min_lon", "max_lon"):
            if not -180.0 <= getattr(self, name) <= 180.0:
                raise ValueError(f"{name} {getattr(self, name)} is outside [-180, 180]")
        if self.min_lat >= self.max_lat:
            raise ValueError(f"min_lat {self.min_lat} is not below max_lat {self.max_lat}")
        if self.min_lon >= self.max_lon:
            raise ValueError(f"min_lon {self.min_lon} is not below max_lon {self.max_lon}")

    @classmethod
    def parse(cls, text: str) -> BBox:
        """``MIN_LAT,MIN_LON,MAX_LAT,MAX_LON`` as given on a command line."""
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError(f"expected MIN_LAT,MIN_LON,MAX_LAT,MAX_LON, got {text!r}")
        try:
            return cls(*(float(p) for p in parts))
        except ValueError as e:
            if "outside" in str(e) or "below" in str(e):
                raise
            raise ValueError(f"expected four numbers, got {text!r}") from None

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon

    @property
    def center(self) -> tuple[float, float]:
        return (self.min_lat + self.max_lat) / 2, (self.min_lon + self.max_lon) / 2


# Named areas a simulator can drive in; the map centres on the same boxes.
AREAS: dict[str, BBox] = {
    "nyc": BBox(40.700, -74.020, 40.800, -73.930),
    "london": BBox(51.470, -0.200, 51.550, -0.030),
    "sf": BBox(37.730, -122.510, 37.810, -122.380),
    "berlin": BBox(52.470, 13.300, 52.560, 13.470),
}
