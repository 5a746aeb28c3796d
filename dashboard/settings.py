"""Settings of the dashboard and its map page: each environment variable, its default and its flag, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from fleet import state
from fleet.geo import AREAS, BBox
from fleet.settings import (
    DRIVER_TOPIC,
    KAFKA_BOOTSTRAP_SERVERS,
    LOG_LEVEL,
    RIDE_MATCH_TOPIC,
    RIDE_REQUEST_TOPIC,
    ZONE_EVENTS_TOPIC,
    ZONES_MAX,
    ZONES_TOPIC,
    Setting,
    Settings,
    non_negative_float,
    parse_bool,
    port_number,
    positive_float,
    positive_int,
    setting_field,
)


def origins(raw: str) -> tuple[str, ...]:
    """Comma-separated origins allowed besides the page's own; ``*`` would let any site read the fleet."""
    values = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    if "*" in values:
        raise ValueError("'*' would let any web site connect; list the origins instead")
    for origin in values:
        if not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an origin like https://maps.example.com")
    return values


def host_name(text: str) -> str:
    """A Host header's or a listed name's host, compared without its port: lower case, no brackets, no final dot."""
    host = text.strip().lower()
    if host.startswith("["):  # [::1] or [::1]:5000
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:  # name:port (a bare IPv6 address has several colons and no port)
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_names(raw: str) -> tuple[str, ...]:
    """Comma-separated host names, as users type them in the address bar (ports ignored)."""
    names = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        name = host_name(entry)
        if not name or any(c in name for c in "/@*?# \t") or "://" in entry:
            raise ValueError(f"{entry!r} is not a host name like maps.example.com or 10.0.0.5")
        names.append(name)
    return tuple(names)


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


# Names that only this machine can be reached by: a page on another site can never be served under them.
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")
HOST = Setting("DASHBOARD_HOST", "127.0.0.1", "Address the dashboard listens on (0.0.0.0: every interface).")
PORT = Setting("DASHBOARD_PORT", 5000, "Port the dashboard listens on.", port_number)
TICK_MS = Setting("DASHBOARD_TICK_MS", 100, "Milliseconds between two position frames to the browsers.", positive_int)
STALE_AFTER_S = Setting(
    "DASHBOARD_STALE_AFTER_S",
    state.STALE_AFTER_S,
    "A driver whose newest fix is older than this is stale.",
    positive_float,
)
DROP_AFTER_S = Setting(
    "DASHBOARD_DROP_AFTER_S", state.DROP_AFTER_S, "A driver not heard from for this long is dropped.", positive_float
)
MAX_DRIVERS = Setting(
    "DASHBOARD_MAX_DRIVERS",
    state.MAX_DRIVERS,
    "Most drivers held; past it the longest-silent are evicted.",
    positive_int,
)
READBACK_S = Setting(
    "DASHBOARD_READBACK_S",
    60.0,
    "Seconds of fixes read back at start so the map fills at once (0: none).",
    non_negative_float,
)
RIDES_READBACK_S = Setting(
    "DASHBOARD_RIDES_READBACK_S",
    180.0,
    "Seconds of ride requests and matches read back at start, so current riders show at once (0: none).",
    non_negative_float,
)
TOKEN = Setting("DASHBOARD_TOKEN", "", "When set, the page, the API and Socket.IO require this token.")
CORS_ORIGINS = Setting(
    "DASHBOARD_CORS_ORIGINS", (), "Other origins allowed to connect to Socket.IO, comma-separated (never *).", origins
)
ALLOWED_HOSTS = Setting(
    "DASHBOARD_ALLOWED_HOSTS",
    (),
    "Host names the dashboard answers to besides DASHBOARD_HOST, comma-separated, ports ignored (unset: "
    "localhost, 127.0.0.1, ::1); another Host header gets 400, so a DNS-rebinding page cannot read the map. "
    "With DASHBOARD_HOST=0.0.0.0, list the names users type (maps.example.com, the machine's address).",
    host_names,
)
METADATA_INTERVAL_S = Setting(
    "DASHBOARD_METADATA_INTERVAL_S",
    2.0,
    "Seconds between two looks at the cluster's metadata (leaders, replicas, in-sync replicas, brokers) "
    "for /api/kafka; looked at only while someone asked for it in the last 30 s.",
    positive_float,
)
MAX_REPLAYS = Setting(
    "DASHBOARD_MAX_REPLAYS",
    4,
    "Most browsers replaying the past at once, each with a Kafka consumer of its own; the next is refused.",
    positive_int,
)
TRACK_READS = Setting(
    "DASHBOARD_TRACK_READS",
    4,
    "Most reads of the past from Kafka at once (driver tracks, exported maps), each with a consumer of its own; "
    "the next gets 429.",
    positive_int,
)
ZONE_EVENTS_READBACK_S = Setting(
    "DASHBOARD_ZONE_EVENTS_READBACK_S",
    3600.0,
    "Seconds of zone events read back at start, for the alert feed and the enters/exits of the last hour (0: none).",
    non_negative_float,
)
SECRET_KEY = Setting("SECRET_KEY", "", "Flask's secret key (unset: a random one per process).")
DEAD_LETTER = Setting(
    "DASHBOARD_DEAD_LETTER",
    True,
    "Copy refused messages to <topic>.dlq (turn off on all but one instance).",
    parse_bool,
)


@dataclass(frozen=True)
class DashboardSettings(Settings):
    """Everything the dashboard process is configured with (``python -m dashboard --help``)."""

    host: str = setting_field(HOST, "--host", "ADDRESS")
    port: int = setting_field(PORT, "--port", "PORT")
    topic: str = setting_field(DRIVER_TOPIC, "--topic", "NAME")
    bootstrap_servers: str = setting_field(KAFKA_BOOTSTRAP_SERVERS, "--bootstrap-servers", "HOST:PORT[,...]")
    tick_ms: int = setting_field(TICK_MS, "--tick-ms", "MS")
    stale_after_s: float = setting_field(STALE_AFTER_S, "--stale-after-s", "SECONDS")
    drop_after_s: float = setting_field(DROP_AFTER_S, "--drop-after-s", "SECONDS")
    max_drivers: int = setting_field(MAX_DRIVERS, "--max-drivers", "N")
    readback_s: float = setting_field(READBACK_S, "--readback-s", "SECONDS")
    ride_request_topic: str = setting_field(RIDE_REQUEST_TOPIC, "--request-topic", "NAME")
    ride_match_topic: str = setting_field(RIDE_MATCH_TOPIC, "--match-topic", "NAME")
    rides_readback_s: float = setting_field(RIDES_READBACK_S, "--rides-readback-s", "SECONDS")
    zones_topic: str = setting_field(ZONES_TOPIC, "--zones-topic", "NAME")
    zone_events_topic: str = setting_field(ZONE_EVENTS_TOPIC, "--zone-events-topic", "NAME")
    zones_max: int = setting_field(ZONES_MAX, "--zones-max", "N")
    zone_events_readback_s: float = setting_field(ZONE_EVENTS_READBACK_S, "--zone-events-readback-s", "SECONDS")
    metadata_interval_s: float = setting_field(METADATA_INTERVAL_S, "--metadata-interval-s", "SECONDS")
    max_replays: int = setting_field(MAX_REPLAYS, "--max-replays", "N")
    track_reads: int = setting_field(TRACK_READS, "--track-reads", "N")
    token: str = setting_field(TOKEN)  # never a flag: command lines are visible to every user of the machine
    cors_origins: tuple[str, ...] = setting_field(CORS_ORIGINS, "--cors-origins", "ORIGIN[,...]")
    allowed_hosts: tuple[str, ...] = setting_field(ALLOWED_HOSTS, "--allowed-hosts", "NAME[,...]")
    secret_key: str = setting_field(SECRET_KEY)
    dead_letter: bool = setting_field(DEAD_LETTER, "--dead-letter")
    log_level: str = setting_field(LOG_LEVEL, "--log-level", "LEVEL")
    # The page: the base map's tiles and where it opens.
    tile_url: str = setting_field(TILE_URL, "--tile-url", "URL")
    tile_attribution: str = setting_field(TILE_ATTRIBUTION)
    area: str = setting_field(MAP_AREA, "--map-area", "AREA")

    @property
    def tiles_off(self) -> bool:
        return self.tile_url == NO_TILES

    @property
    def tile_origin(self) -> str | None:
        return tile_origin(self.tile_url)

    @property
    def area_box(self) -> BBox:
        return area_box(self.area)

    @property
    def url(self) -> str:
        """Where a browser on this machine opens the map (the loopback address when bound to every interface)."""
        host = "127.0.0.1" if self.host in {"0.0.0.0", ""} else (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{host}:{self.port}"

    def answered_hosts(self) -> frozenset[str]:
        """The Host names served: the listed ones (by default the loopback names), and always the bound address."""
        listed = self.allowed_hosts or DEFAULT_ALLOWED_HOSTS
        return frozenset({*listed, host_name(self.host)} - {""})
