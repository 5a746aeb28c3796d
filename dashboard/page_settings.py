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
    tile_origin(value)
    return value


def tile_origin(url: str) -> str | None:
    """The origin the page loads tiles from, as a CSP source; None for our own server or no tiles.

    Leaflet fills ``{s}`` with a subdomain (a, b, c): a host label holding a placeholder becomes
    ``*``, so ``https://{s}.tile.example.com/...`` gives ``https://*.tile.example.com``.
    """
    if url == NO_TILES or not url.startswith(("http://", "https://")):
        return None
    scheme, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0].rpartition("@")[2]
    host, colon, port = authority, "", ""
    if not authority.endswith("]") and ":" in authority:
        host, colon, port = authority.rpartition(":")
    labels = host.split(".")
    templated = [i for i, label in enumerate(labels) if "{" in label or "}" in label]
    if templated:
        labels = ["*", *labels[templated[-1] + 1 :]]
    wildcard_too_wide = labels[0] == "*" and len(labels) < 3  # https://*.com would allow a whole top-level domain
    if wildcard_too_wide or not all(labels) or "{" in port:
        raise ValueError(
            f"the tile host {authority!r} needs a domain after its placeholders, like {{s}}.tile.example.com"
        )
    return f"{scheme}://{'.'.join(labels)}{colon}{port}".lower()


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
    def tile_origin(self) -> str | None:
        return tile_origin(self.tile_url)

    @property
    def area_box(self) -> BBox:
        return area_box(self.area)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PageSettings:
        """Read every setting; raises :class:`fleet.settings.SettingError` naming the bad variable."""
        return cls(**read_fields(cls, environ))
