"""Share a map: a standalone HTML file made with folium, of a driver's track or of the fleet (``/export/map.html``).

The file opens without the dashboard: Leaflet comes from folium's public CDN (jsDelivr), or with
``inline`` from our npm copy (``node_modules/leaflet/dist``), written into the file together with its
images as data URIs, so that it opens offline and asks nothing of any server. folium's other default
assets (jQuery, Bootstrap, Font Awesome, awesome-markers) are dropped in both cases: nothing here uses
them, and they could not be inlined. That is also why popups are our :class:`TextPopup`, not
``folium.Popup``, which builds its content with jQuery.

Text from Kafka (driver ids) reaches the file only through :func:`markup_text`. folium's Popup and
Tooltip do not escape: they put their text into a JavaScript template literal inside a ``<script>``,
and branca renders a macro's output again as a Jinja template. So besides what ``html.escape`` covers
(``<``, ``>``, ``&``, quotes), a backtick or ``${`` would run script, a backslash would break the
literal, and ``{{ ... }}`` would run Python in the dashboard while rendering. :func:`markup_text` writes
every character that is not plain ASCII text as a numeric character reference, which the browser shows
as that very character.
"""

from __future__ import annotations

import base64
import math
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import folium
from branca.element import Element, Figure, MacroElement
from folium.template import Template

from dashboard.page import FOLIUM_VIEWPORT, MAX_ZOOM, NODE_MODULES, VIEWPORT, GridBackground
from fleet.geo import BBox
from fleet.track import Point, Track, tick_times

LEAFLET_DIST = NODE_MODULES / "leaflet" / "dist"
# Characters written as themselves; everything else becomes a numeric character reference (see the docstring).
_PLAIN = frozenset(string.ascii_letters + string.digits + " -_.,:;()/+=@!?*%")
# Inline files make no request at all: the policy says so to the browser too, whatever a future folium adds.
INLINE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
)
# The track's colours by derived speed; static/js/track.js draws the live map with the same classes.
SPEED_CLASSES: tuple[tuple[float, str, str], ...] = (
    (5.0, "#7c3aed", "under 5 km/h"),
    (20.0, "#2563eb", "5-20 km/h"),
    (40.0, "#0d9488", "20-40 km/h"),
    (60.0, "#ca8a04", "40-60 km/h"),
    (math.inf, "#dc2626", "60 km/h and more"),
)
STATUS_COLOURS = {"available": "#16a34a", "on_trip": "#2563eb", "offline": "#6b7280", None: "#a855f7"}
# Time labels along a track: the first step that gives at most this many.
MAX_TICKS = 24
TICK_STEPS_S = (300, 600, 900, 1800, 3600, 7200, 10800)
# Markers of a fleet file, at most (the most recently heard): each costs the file ~200 bytes and the browser a marker.
MAX_FLEET_MARKERS = 5000


class Located(Protocol):
    """A driver's latest fix as the fleet file needs it (a ``fleet.state.TrackedDriver`` or a ``Fix``)."""

    driver_id: str
    latitude: float
    longitude: float
    timestamp: float
    status: str | None


@dataclass(frozen=True)
class Assets:
    """Where the file's Leaflet and tiles come from: folium's CDN and ``tile_url``, or all inline and no tiles."""

    inline: bool
    tile_url: str  # "none": no tiles
    tile_attribution: str


def markup_text(text: str) -> str:
    """``text`` as HTML that shows exactly it, safe inside folium's JavaScript strings and branca's templates."""
    return "".join(c if c in _PLAIN else f"&#{ord(c)};" for c in text)


def utc(epoch_s: float, seconds: bool = True) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%H:%M")


def speed_class(speed_kmh: float | None) -> int:
    """Index into :data:`SPEED_CLASSES` of a segment's speed (unknown speed: the slowest class)."""
    speed = speed_kmh or 0.0
    return next((i for i, (below, _, _) in enumerate(SPEED_CLASSES) if speed < below), len(SPEED_CLASSES) - 1)


def runs_by_speed(points: Sequence[Point], speeds: Sequence[float | None]) -> list[tuple[int, list[list[float]]]]:
    """The track cut where its speed class changes: (class, [[lat, lon], ...]) runs, each sharing its first
    point with the previous run's last, so the line has no gap."""
    runs: list[tuple[int, list[list[float]]]] = []
    for i in range(1, len(points)):
        cls = speed_class(speeds[i])
        segment_end = [points[i][0], points[i][1]]
        if runs and runs[-1][0] == cls:
            runs[-1][1].append(segment_end)
        else:
            runs.append((cls, [[points[i - 1][0], points[i - 1][1]], segment_end]))
    return runs


def tick_step(seconds: float) -> int:
    return next((step for step in TICK_STEPS_S if seconds / step <= MAX_TICKS), TICK_STEPS_S[-1])


def point_at(points: Sequence[Point], t: float) -> Point:
    """The first point taken at or after ``t`` (the last point if none): where a time label goes."""
    lo, hi = 0, len(points) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if points[mid][2] < t:
            lo = mid + 1
        else:
            hi = mid
    return points[lo]


class Raw(Element):
    """Text put into the file as it is: never rendered as a template (Leaflet's code holds braces)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def render(self, **kwargs: Any) -> str:
        return self.text


class TextPopup(MacroElement):
    """A popup of text already made safe by :func:`markup_text`, without jQuery (folium's Popup needs it)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            {{ this._parent.get_name() }}.bindPopup({{ this.html|tojson }});
        {% endmacro %}
        """
    )

    def __init__(self, text: str) -> None:
        super().__init__()
        self._name = "TextPopup"
        self.html = markup_text(text)


class FixMarkers(MacroElement):
    """Many small circles with a tooltip each, from one JSON array: a fleet of markers in one loop."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            (function (map, fixes) {
              for (const [lat, lon, colour, label] of fixes) {
                const style = { radius: 5, weight: 1, color: "#1f2937", fillColor: colour, fillOpacity: 0.9 };
                L.circleMarker([lat, lon], style).bindTooltip(label).addTo(map);
              }
            })({{ this._parent.get_name() }}, {{ this.fixes|tojson }});
        {% endmacro %}
        """
    )

    def __init__(self, fixes: list[tuple[float, float, str, str]]) -> None:
        super().__init__()
        self._name = "FixMarkers"
        self.fixes = [[lat, lon, colour, markup_text(label)] for lat, lon, colour, label in fixes]


class Legend(MacroElement):
    """A box in a corner of the file: what it shows, when, and what the colours mean."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}
            <style>
              .export-legend { position: fixed; right: 12px; top: 12px; z-index: 1000; max-width: 290px;
                padding: 10px 12px; background: #ffffff; color: #111827; border-radius: 8px;
                box-shadow: 0 2px 10px rgba(0, 0, 0, 0.25); font: 13px/1.4 system-ui, sans-serif; }
              .export-legend h1 { margin: 0 0 4px; font-size: 14px; overflow-wrap: anywhere; }
              .export-legend p { margin: 2px 0; }
              .export-legend i { display: inline-block; width: 18px; height: 5px; margin-right: 6px;
                vertical-align: middle; }
              .export-legend i.dot { width: 10px; height: 10px; border-radius: 50%; }
            </style>
        {% endmacro %}
        {% macro html(this, kwargs) %}
            <div class="export-legend">{{ this.body }}</div>
        {% endmacro %}
        """
    )

    def __init__(self, title: str, lines: Iterable[str], swatches: Iterable[tuple[str, str, bool]]) -> None:
        super().__init__()
        self._name = "Legend"
        parts = [f"<h1>{markup_text(title)}</h1>", *(f"<p>{markup_text(line)}</p>" for line in lines)]
        for colour, label, dot in swatches:
            shape = ' class="dot"' if dot else ""
            parts.append(f'<p><i{shape} style="background: {colour}"></i>{markup_text(label)}</p>')
        self.body = "".join(parts)


def new_map(title: str, bounds: BBox | list[list[float]], assets: Assets) -> folium.Map:
    """A folium map fitted to ``bounds``, with tiles (or the grid) and Leaflet as ``assets`` say."""
    figure = Figure(title=markup_text(title))
    fmap = folium.Map(tiles=None, max_zoom=MAX_ZOOM, control_scale=True, prefer_canvas=True)
    fmap.add_to(figure)
    GridBackground().add_to(fmap)
    if not assets.inline and assets.tile_url != "none":
        folium.TileLayer(tiles=assets.tile_url, attr=assets.tile_attribution, max_zoom=MAX_ZOOM).add_to(fmap)
    corners = (
        [[bounds.min_lat, bounds.min_lon], [bounds.max_lat, bounds.max_lon]] if isinstance(bounds, BBox) else bounds
    )
    # The legend stands in the top right corner: keep the drawing clear of it.
    fmap.fit_bounds(corners, padding_top_left=(30, 30), padding_bottom_right=(330, 30), max_zoom=17)
    if assets.inline:
        fmap.default_js, fmap.default_css = [], []
        figure.header.add_child(Raw(f'<meta http-equiv="Content-Security-Policy" content="{INLINE_POLICY}">'), index=0)
        figure.header.add_child(Raw(f"<style>{leaflet_css()}</style>"), name="leaflet_css")
        figure.header.add_child(Raw(f"<script>{leaflet_js()}</script>"), name="leaflet_js")
    else:
        # Only Leaflet, from folium's own CDN list: nothing here uses jQuery, Bootstrap or the icon fonts.
        fmap.default_js = [asset for asset in folium.Map.default_js if asset[0] == "leaflet"]
        fmap.default_css = [asset for asset in folium.Map.default_css if asset[0] == "leaflet_css"]
    return fmap


def leaflet_js() -> str:
    # "</" could end the script element early; Leaflet 1.9 holds none, and this keeps it so.
    return (LEAFLET_DIST / "leaflet.js").read_text(encoding="utf-8").replace("</", "<\\/")


def leaflet_css() -> str:
    """Leaflet's CSS with its images (layers control, default marker) as data URIs: no file is fetched."""

    def data_uri(match: re.Match[str]) -> str:
        image = LEAFLET_DIST / match.group(1)
        return f"url(data:image/png;base64,{base64.b64encode(Path(image).read_bytes()).decode('ascii')})"

    return re.sub(
        r"url\((images/[a-z0-9-]+\.png)\)", data_uri, (LEAFLET_DIST / "leaflet.css").read_text(encoding="utf-8")
    )


def render(fmap: folium.Map) -> str:
    root = fmap.get_root()
    if not isinstance(root, Figure):
        raise TypeError(f"expected folium's map inside a branca Figure, got {type(root).__name__}")
    # folium's viewport forbids zooming the page (WCAG 1.4.4): the dashboard's own allows it.
    return FOLIUM_VIEWPORT.sub(VIEWPORT, str(root.render()), count=1)


def track_file(track: Track, assets: Assets) -> str:
    """The track as a file: the line coloured by speed, start and end, stops, time labels and a legend."""
    points = track.points
    window = f"{utc(track.window.start)} to {utc(track.window.end)} UTC"
    if not points:
        fmap = new_map(f"Track of {track.driver_id}", [[40.7, -74.0], [40.8, -73.9]], assets)
        Legend(f"Track of {track.driver_id}", [window, "no fixes in this window"], []).add_to(fmap)
        return render(fmap)
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    fmap = new_map(f"Track of {track.driver_id}", [[min(lats), min(lons)], [max(lats), max(lons)]], assets)
    for cls, line in runs_by_speed(points, track.speeds_kmh):
        folium.PolyLine(line, color=SPEED_CLASSES[cls][1], weight=5, opacity=0.9).add_to(fmap)
    _ticks(fmap, points)
    for stop in track.stops:
        marker = folium.CircleMarker([stop.latitude, stop.longitude], radius=7, color="#111827", fill_color="#f59e0b")
        text = f"{track.driver_id}: stopped {_duration(stop.seconds)} from {utc(stop.start)} UTC"
        marker.add_child(folium.Tooltip(markup_text(text))).add_child(TextPopup(text)).add_to(fmap)
    for (lat, lon, t), what, colour in ((points[0], "first fix", "#16a34a"), (points[-1], "last fix", "#111827")):
        marker = folium.CircleMarker([lat, lon], radius=8, color="#ffffff", weight=2, fill_color=colour, fill_opacity=1)
        text = f"{track.driver_id}: {what}, {utc(t)} UTC ({lat:.6f}, {lon:.6f})"
        marker.add_child(folium.Tooltip(markup_text(text))).add_child(TextPopup(text)).add_to(fmap)
    stops = f"{len(track.stops)} stop{'' if len(track.stops) == 1 else 's'} (within 20 m for 30 s or more)"
    lines = [window, f"{len(points):,} fixes, {stops}"]
    if track.truncated:
        lines.append(f"only the first {len(points):,} fixes of the window: ask for a shorter one for the rest")
    swatches = [(colour, label, False) for _, colour, label in SPEED_CLASSES]
    swatches += [("#16a34a", "first fix", True), ("#111827", "last fix", True), ("#f59e0b", "a stop", True)]
    Legend(f"Track of {track.driver_id}", lines, swatches).add_to(fmap)
    return render(fmap)


def _ticks(fmap: folium.Map, points: Sequence[Point]) -> None:
    """A small dot with its time every few minutes along the track (a step that gives at most MAX_TICKS)."""
    labels = []
    for t in tick_times(points[0][2], points[-1][2], tick_step(points[-1][2] - points[0][2])):
        lat, lon, _ = point_at(points, t)
        labels.append((lat, lon, "#ffffff", f"{utc(t, seconds=False)} UTC"))
    FixMarkers(labels).add_to(fmap)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def fleet_file(drivers: Sequence[Located], at: float, omitted: int, area: BBox, assets: Assets) -> str:
    """The fleet as a file: each driver's latest fix at ``at`` as a dot coloured by status, and a legend."""
    if drivers:
        lats, lons = [d.latitude for d in drivers], [d.longitude for d in drivers]
        bounds: BBox | list[list[float]] = [[min(lats), min(lons)], [max(lats), max(lons)]]
    else:
        bounds = area
    fmap = new_map(f"Fleet at {utc(at)} UTC", bounds, assets)
    FixMarkers(
        [
            (d.latitude, d.longitude, STATUS_COLOURS.get(d.status, STATUS_COLOURS[None]), _fleet_label(d))
            for d in drivers
        ]
    ).add_to(fmap)
    lines = [f"{len(drivers):,} drivers: each one's latest fix at {utc(at)} UTC"]
    if omitted:
        lines.append(f"{omitted:,} more drivers left out (the {len(drivers):,} most recently heard are shown)")
    swatches = [(colour, status or "no status", True) for status, colour in STATUS_COLOURS.items()]
    Legend(f"Fleet at {utc(at)} UTC", lines, swatches).add_to(fmap)
    return render(fmap)


def _fleet_label(driver: Located) -> str:
    return f"{driver.driver_id}: {driver.status or 'no status'}, {utc(driver.timestamp)} UTC"
