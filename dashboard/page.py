"""The map page at `/`: folium's base map inside our template, next to the live panel.

folium builds the base map (tiles or a local grid, and the Leaflet map object). The page renders
folium's root first, then places its header, html and script parts in ``templates/index.html``.
folium points at public CDNs (Leaflet, jQuery, Bootstrap, Font Awesome, ...) by default: every map
built here gets asset lists of its own that name only Leaflet, served by this dashboard from
``node_modules`` (installed by npm, pinned in package.json), so the page works without internet.
A MacroElement added last hands the Leaflet map object to our module ``static/js/main.js``.
folium's viewport tag forbids zooming the page (``user-scalable=no``), which leaves readers with low
vision unable to enlarge the panel: the page gets one that allows it (Leaflet still takes the
gestures made on the map itself, whose ``touch-action`` is ``none``).

The page is the same for every request (it holds nothing per user, not even the access token), so
it is rendered once, when the app is made: folium's build costs far more than serving a string.
Its Content-Security-Policy is computed from that same HTML: the inline parts folium and the
template need (the import map, folium's script and style blocks) are allowed by their SHA-256
hashes, and nothing else inline runs or applies.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import folium
from branca.element import Figure, MacroElement
from flask import Flask, Response, abort, current_app, render_template, send_from_directory, url_for
from folium.template import Template

from dashboard.settings import DashboardSettings

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
# The built files of the packages the page uses; the rest of node_modules is not served.
VENDOR_DIRS = ("leaflet/dist/", "socket.io-client/dist/", "@geoman-io/leaflet-geoman-free/dist/", "h3-js/dist/")
LEAFLET_JS = "leaflet/dist/leaflet.js"
LEAFLET_CSS = "leaflet/dist/leaflet.css"
SOCKET_IO_JS = "socket.io-client/dist/socket.io.esm.min.js"
# OpenStreetMap's deepest zoom; the grid stops there too.
MAX_ZOOM = 19
VENDOR_MAX_AGE_S = 3600
# Zooming allowed (WCAG 1.4.4): no maximum-scale, no user-scalable=no.
VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'
FOLIUM_VIEWPORT = re.compile(r"<meta\s+name=\"viewport\"[^>]*>")


@dataclass(frozen=True)
class RenderedPage:
    """The page every request gets, and the policy that lets exactly its own inline parts run."""

    html: str
    csp: str


@dataclass(frozen=True)
class MapParts:
    """folium's rendered map, in the three places the page template puts it."""

    header: str
    html: str
    script: str


class GridBackground(MacroElement):
    """A plain background with a faint grid, drawn in the browser: the map without tiles looks intentional.

    The line colours are the page's (``--grid-minor``, ``--grid-major`` in page.css, one pair per theme),
    read when a tile is drawn; the page redraws the grid when the theme changes.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            (function (map) {
              const Grid = L.GridLayer.extend({
                createTile: function () {
                  const tile = document.createElement("canvas");
                  const size = this.getTileSize();
                  tile.width = size.x;
                  tile.height = size.y;
                  const ctx = tile.getContext("2d");
                  const style = getComputedStyle(document.documentElement);
                  const minor = style.getPropertyValue("--grid-minor").trim() || "rgba(100, 116, 139, 0.09)";
                  const major = style.getPropertyValue("--grid-major").trim() || "rgba(100, 116, 139, 0.2)";
                  ctx.strokeStyle = minor;
                  ctx.beginPath();
                  for (let i = 64.5; i < size.x; i += 64) {
                    ctx.moveTo(i, 0); ctx.lineTo(i, size.y);
                    ctx.moveTo(0, i); ctx.lineTo(size.x, i);
                  }
                  ctx.stroke();
                  ctx.strokeStyle = major;
                  ctx.beginPath();
                  ctx.moveTo(0.5, 0); ctx.lineTo(0.5, size.y);
                  ctx.moveTo(0, 0.5); ctx.lineTo(size.x, 0.5);
                  ctx.stroke();
                  return tile;
                },
              });
              new Grid({ className: "grid-background", maxZoom: {{ this.max_zoom }}, zIndex: 0 }).addTo(map);
            })({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, max_zoom: int = MAX_ZOOM) -> None:
        super().__init__()
        self._name = "GridBackground"
        self.max_zoom = max_zoom


class FleetHook(MacroElement):
    """Hands the Leaflet map to our module once folium's script has created it."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            import({{ this.module_url|tojson }})
              .then((page) => page.start({{ this._parent.get_name() }}))
              .catch((error) => {
                console.error(error);
                document.body.dataset.failed = String(error);
              });
        {% endmacro %}
        """
    )

    def __init__(self, module_url: str) -> None:
        super().__init__()
        self._name = "FleetHook"
        self.module_url = module_url


def build_map(settings: DashboardSettings, leaflet_js: str, leaflet_css: str, module_url: str) -> folium.Map:
    """The base map: tiles (or the grid), assets from our own server, and the hook to our module."""
    area = settings.area_box
    fmap = folium.Map(
        location=list(area.center),
        zoom_start=12,
        tiles=None,
        max_zoom=MAX_ZOOM,
        control_scale=True,
        # Quarter zoom steps let the first view fit the fleet snugly (the zoom buttons still step by 1).
        zoom_snap=0.25,
        # Leaflet's own vectors (the selected driver's trail) on canvas, like the fleet layer.
        prefer_canvas=True,
    )
    # Per map instance: assigning new lists leaves folium's class-level defaults to other maps.
    fmap.default_js = [("leaflet", leaflet_js)]
    fmap.default_css = [("leaflet_css", leaflet_css)]
    # The grid always lies beneath: tiles that cannot load (no internet) leave a map that still looks intentional.
    GridBackground().add_to(fmap)
    if not settings.tiles_off:
        folium.TileLayer(
            tiles=settings.tile_url,
            attr=settings.tile_attribution,
            name="tiles",
            max_zoom=MAX_ZOOM,
            class_name="map-tiles",  # the dark theme inverts the tiles' colours (page.css)
        ).add_to(fmap)
    # Open on the whole area whatever the screen; the page fits the fleet itself once it arrives.
    fmap.fit_bounds([[area.min_lat, area.min_lon], [area.max_lat, area.max_lon]])
    FleetHook(module_url).add_to(fmap)
    return fmap


def render_map(fmap: folium.Map) -> MapParts:
    root = fmap.get_root()
    if not isinstance(root, Figure):
        raise TypeError(f"expected folium's map inside a branca Figure, got {type(root).__name__}")
    root.render()  # fills the header with the asset links and lays out the children
    header, replaced = FOLIUM_VIEWPORT.subn(VIEWPORT, root.header.render())
    if replaced != 1:
        raise RuntimeError(f"expected folium to write one viewport tag, found {replaced}: check dashboard/page.py")
    return MapParts(header=header, html=root.html.render(), script=root.script.render())


def init_app(app: Flask, settings: DashboardSettings) -> None:
    """Register the page at ``/`` and the npm-installed assets under ``/vendor/``; render the page."""
    app.add_url_rule("/", "page.index", index)
    app.add_url_rule("/vendor/<path:filename>", "page.vendor", vendor)
    # url_for and render_template need a request; the page is the same for every one, so a made-up one will do.
    with app.test_request_context("/"):
        app.extensions["fleet_page"] = render_page(settings)


def render_page(settings: DashboardSettings) -> RenderedPage:
    fmap = build_map(
        settings,
        leaflet_js=url_for("page.vendor", filename=LEAFLET_JS),
        leaflet_css=url_for("page.vendor", filename=LEAFLET_CSS),
        module_url=url_for("static", filename="js/main.js"),
    )
    html = render_template(
        "index.html",
        map=render_map(fmap),
        import_map={"imports": {"socket.io-client": url_for("page.vendor", filename=SOCKET_IO_JS)}},
    )
    return RenderedPage(html, content_security_policy(html, settings.tile_origin))


def index() -> Response:
    page: RenderedPage = current_app.extensions["fleet_page"]
    response = Response(page.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = page.csp
    return response


def content_security_policy(html: str, tile_origin: str | None) -> str:
    """The page's CSP: our origin only, its inline scripts and styles by hash, tiles from ``tile_origin``.

    ``connect-src 'self'`` covers the Socket.IO websocket (same host and port, ws: or wss:).
    """
    inline = InlineParts.of(html)
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *_hashes(inline.scripts)],
        "style-src": ["'self'", *_hashes(inline.styles)],
        "img-src": ["'self'", "data:", *([tile_origin] if tile_origin else [])],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class InlineParts(HTMLParser):
    """The text of every inline ``<script>`` (the import map included) and ``<style>`` element, as browsers hash it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._inside: str | None = None
        self._text: list[str] = []

    @classmethod
    def of(cls, html: str) -> InlineParts:
        parser = cls()
        parser.feed(html)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "style" or (tag == "script" and "src" not in dict(attrs)):
            self._inside, self._text = tag, []

    def handle_data(self, data: str) -> None:
        if self._inside is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._inside:
            (self.scripts if tag == "script" else self.styles).append("".join(self._text))
            self._inside = None


def _hashes(texts: list[str]) -> list[str]:
    digests = (base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") for text in texts)
    return list(dict.fromkeys(f"'sha256-{digest}'" for digest in digests))  # once each, in page order


def vendor(filename: str) -> Response:
    if ".." in PurePosixPath(filename).parts or not filename.startswith(VENDOR_DIRS):
        abort(404)
    return send_from_directory(NODE_MODULES, filename, max_age=VENDOR_MAX_AGE_S)
