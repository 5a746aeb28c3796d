"""Settings of the map page: the base map's tiles and where it opens, declared once here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fleet.geo import AREAS, BBox
from fleet.settings import Setting, read_fields, setting_field

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
NO_TILES = "none"


def tile_url(raw: str) -> str:
    value = raw.strip()
    if value.lower() == NO_TILES:
        return NO_TILES
    if not value.startswith(("http://", "https://", "/")):
        raise ValueError("expected an address like https://tiles.example.com/{z}/{x}/{y}.png, or none")
    if not all(part in value for part in ("{z}", "{x}", "{y}")):
        raise ValueError("a tile address needs the {z}, {x} and {y} placeholders")
    return value


def area_box(text: str) -> BBox:
    """A named area (nyc, london, ...) or MIN_LAT,MIN_LON,MAX_LAT,MAX_LON."""
    name = text.strip().lower()
    if name in AREAS:
        return AREAS[name]
    if "," not in name:
        raise ValueError(
            f"unknown area {text!r}; choose one of {', '.join(AREAS)} or give MIN_LAT,MIN_LON,MAX_LAT,MAX_LON"
        )
    return BBox.parse(name)


def map_area(raw: str) -> str:
    area_box(raw)
    return raw.strip().lower()


TILE_URL = Setting(
    "TILE_URL", OSM_TILES, "Map tiles ({z}/{x}/{y} address of your tile server), or none for a plain grid.", tile_url
)
TILE_ATTRIBUTION = Setting(
    "TILE_ATTRIBUTION", OSM_ATTRIBUTION, "Attribution shown for the tiles (HTML, from the operator, not from Kafka)."
)
MAP_AREA = Setting(
    "MAP_AREA", "nyc", f"Where the map opens until drivers arrive: {', '.join(AREAS)} or a bbox.", map_area
)


@dataclass(frozen=True)
class PageSettings:
    """Everything the map page is configured with."""

    tile_url: str = setting_field(TILE_URL)
    tile_attribution: str = setting_field(TILE_ATTRIBUTION)
    area: str = setting_field(MAP_AREA)

    @property
    def tiles_off(self) -> bool:
        return self.tile_url == NO_TILES

    @property
    def area_box(self) -> BBox:
        return area_box(self.area)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PageSettings:
        """Read every setting; raises :class:`fleet.settings.SettingError` naming the bad variable."""
        return cls(**read_fields(cls, environ))
