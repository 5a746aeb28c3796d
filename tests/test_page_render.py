"""The map page without a browser: folium's map with our assets, the template, the vendor route, the settings."""

import base64
import hashlib
import json
import re

import folium
import pytest
from flask import Flask

from dashboard import page
from dashboard.settings import OSM_ATTRIBUTION, OSM_TILES, DashboardSettings
from fleet.geo import AREAS
from fleet.settings import SettingError
from tests.conftest import ROOT

OFFLINE = DashboardSettings(tile_url="none")
SOURCES = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def render(settings: DashboardSettings) -> page.MapParts:
    fmap = page.build_map(settings, "/vendor/leaflet/dist/leaflet.js", "/vendor/leaflet/dist/leaflet.css", "/m.js")
    return page.render_map(fmap)


def page_app(settings: DashboardSettings = OFFLINE) -> Flask:
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    page.init_app(app, settings)
    return app


def csp(header: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (d.split() for d in header.split(";"))}


def sha256(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def test_folium_map_loads_only_leaflet_from_our_server():
    parts = render(OFFLINE)
    assert SOURCES.findall(parts.header) == ["/vendor/leaflet/dist/leaflet.js", "/vendor/leaflet/dist/leaflet.css"]
    assert "://" not in parts.header + parts.html + parts.script


def test_cdn_assets_are_replaced_per_map_not_for_every_folium_map():
    render(OFFLINE)
    other = folium.Map(tiles=None).get_root().render()
    assert "https://cdn.jsdelivr.net/npm/leaflet" in other
    assert "https://code.jquery.com/" in other


def test_without_tiles_the_map_gets_a_grid_background_and_no_tile_layer():
    parts = render(OFFLINE)
    assert "L.GridLayer.extend" in parts.script
    assert "L.tileLayer" not in parts.script


def test_openstreetmap_tiles_with_attribution_by_default():
    parts = render(DashboardSettings())
    assert OSM_TILES in parts.script
    assert "https://www.openstreetmap.org/copyright" in parts.script and "contributors" in parts.script


def test_tiles_lie_over_the_grid_so_a_machine_without_internet_still_shows_a_grid():
    parts = render(DashboardSettings())
    assert parts.script.index("L.GridLayer.extend") < parts.script.index("L.tileLayer")


def test_own_tile_server_and_attribution():
    parts = render(
        DashboardSettings(tile_url="https://tiles.example.com/{z}/{x}/{y}.png", tile_attribution="Example Maps")
    )
    assert "https://tiles.example.com/{z}/{x}/{y}.png" in parts.script
    assert "Example Maps" in parts.script
    assert OSM_TILES not in parts.script


def test_our_module_gets_the_map_after_folium_created_it():
    parts = render(OFFLINE)
    created = re.search(r"var (map_\w+) = L\.map\(", parts.script)
    assert created, parts.script
    hook = parts.script.index('import("/m.js")')
    assert hook > created.start()
    assert f"page.start({created.group(1)})" in parts.script


def test_map_opens_on_the_configured_area():
    parts = render(DashboardSettings(tile_url="none", area="london"))
    london = AREAS["london"]
    assert f"center: [{london.center[0]}, {london.center[1]}]" in parts.script
    fit = re.search(r"fitBounds\(\s*(\[\[.*?\]\])", parts.script, re.S)
    assert fit and json.loads(fit.group(1)) == [[london.min_lat, london.min_lon], [london.max_lat, london.max_lon]]


def test_page_places_folium_parts_next_to_the_panel():
    response = page_app().test_client().get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<script type="importmap">{"imports": {"socket.io-client": "/vendor/socket.io-client/dist/' in html
    assert 'class="folium-map"' in html and 'id="panel"' in html and 'id="card"' in html
    assert html.index("/vendor/leaflet/dist/leaflet.js") < html.index("L.map(")
    assert 'import("/static/js/main.js")' in html
    assert "token" not in html, "the page never holds the access token"
    assert {host for host in re.findall(r"https?://([^/\"'\s]+)", html)} == set()


def test_page_is_rendered_once_and_every_request_gets_the_same_bytes():
    client = page_app().test_client()
    first = client.get("/")
    assert client.get("/").data == first.data
    assert client.get("/").headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]


def test_page_policy_allows_our_origin_and_exactly_the_inline_scripts_and_styles_of_the_page():
    response = page_app().test_client().get("/")
    html = response.get_data(as_text=True)
    policy = csp(response.headers["Content-Security-Policy"])
    inline_scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.S)
    inline_styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert len(inline_scripts) == 3 and len(inline_styles) >= 1  # the import map, folium's two; folium's styles
    assert policy["script-src"] == ["'self'", *dict.fromkeys(map(sha256, inline_scripts))]
    assert policy["style-src"] == ["'self'", *dict.fromkeys(map(sha256, inline_styles))]
    assert policy["default-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"], "no tile server with TILE_URL=none"
    assert policy["object-src"] == policy["base-uri"] == policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("tile_url", "origin"),
    [
        (OSM_TILES, "https://tile.openstreetmap.org"),
        ("https://{s}.tile.example.com/{z}/{x}/{y}.png", "https://*.tile.example.com"),
        ("http://Tiles.Example.com:8080/osm/{z}/{x}/{y}.png", "http://tiles.example.com:8080"),
    ],
)
def test_page_policy_lets_images_come_from_the_tile_server(tile_url, origin):
    response = page_app(DashboardSettings(tile_url=tile_url)).test_client().get("/")
    assert csp(response.headers["Content-Security-Policy"])["img-src"] == ["'self'", "data:", origin]


def test_tiles_from_our_own_server_need_no_other_origin():
    assert DashboardSettings(tile_url="/tiles/{z}/{x}/{y}.png").tile_origin is None


def test_a_tile_host_that_is_all_placeholder_is_refused():
    with pytest.raises(SettingError, match="TILE_URL.*needs a domain"):
        DashboardSettings.from_env({"TILE_URL": "https://{s}.com/{z}/{x}/{y}.png"})


def test_ids_from_kafka_are_shown_in_bidi_isolated_elements():
    html = page_app().test_client().get("/").get_data(as_text=True)
    for element_id in ("card-id", "rider-card-id", "rider-card-rider", "rider-card-driver", "following-id"):
        tag = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', html)
        assert tag and 'dir="auto"' in tag.group(0) and "kafka-text" in tag.group(0), element_id
    assert re.search(r"\.kafka-text\s*\{\s*unicode-bidi:\s*isolate", (ROOT / "static/css/page.css").read_text())


def test_vendor_route_serves_the_npm_built_files_only():
    client = page_app().test_client()
    leaflet = client.get("/vendor/leaflet/dist/leaflet.js")
    assert leaflet.status_code == 200 and b"Leaflet" in leaflet.data[:400]
    assert client.get("/vendor/socket.io-client/dist/socket.io.esm.min.js").status_code == 200
    assert client.get("/vendor/leaflet/package.json").status_code == 404
    assert client.get("/vendor/leaflet/dist/../package.json").status_code == 404
    assert client.get("/vendor/ws/package.json").status_code == 404


def test_page_scripts_never_insert_markup():
    """Text from Kafka reaches the page only through textContent and text nodes."""
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|bindPopup|bindTooltip|setContent")
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in (ROOT / "static").rglob("*.js")
        for match in forbidden.finditer(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize("raw", ["NONE", "none", " None "])
def test_tile_url_none_turns_tiles_off(raw):
    assert DashboardSettings.from_env({"TILE_URL": raw}).tiles_off


def test_default_settings_use_openstreetmap_and_nyc():
    settings = DashboardSettings.from_env({})
    assert (settings.tile_url, settings.tile_attribution) == (OSM_TILES, OSM_ATTRIBUTION)
    assert settings.area_box == AREAS["nyc"]


def test_area_as_a_bounding_box():
    settings = DashboardSettings.from_env({"MAP_AREA": "48.8,2.2,48.9,2.4"})
    assert settings.area_box.center == pytest.approx((48.85, 2.3))


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("TILE_URL", "https://tiles.example.com/tile.png", "{z}, {x} and {y}"),
        ("TILE_URL", "tiles.example.com/{z}/{x}/{y}.png", "https://"),
        ("MAP_AREA", "atlantis", "unknown area"),
        ("MAP_AREA", "1,2,3", "MIN_LAT,MIN_LON,MAX_LAT,MAX_LON"),
    ],
)
def test_bad_page_settings_name_the_variable(name, raw, message):
    with pytest.raises(SettingError, match=name) as error:
        DashboardSettings.from_env({name: raw})
    assert message in str(error.value)
