"""The map page's accessibility without a browser: the viewport lets readers zoom, and the palette.

The canvas draws with static/js/palette.js and the panel with page.css's custom properties: both
must hold the same colours, each status must stand out from the map (WCAG 1.4.11, 3:1), and the
statuses must stay apart for readers with a colour-vision deficiency. Deficiencies are simulated
with Machado, Oliveira and Fernandes (2009) at full severity, in linear RGB; distances are CIEDE2000.
"""

from __future__ import annotations

import itertools
import math
import re

import pytest

from tests.conftest import ROOT
from tests.test_page_render import page_app

PALETTE_JS = ROOT / "static" / "js" / "palette.js"
PAGE_CSS = ROOT / "static" / "css" / "page.css"
STATUSES = ("available", "on_trip", "offline", "unknown")
RIDERS = ("waiting", "en_route")
# The stylesheet's name for each colour of the canvas palette.
CSS_NAMES = {"map": "map", **{s: s for s in STATUSES}, "waiting": "rider-waiting", "en_route": "rider-en_route"}
# Full-severity simulation matrices (linear RGB) of Machado et al. 2009.
VISIONS = {
    "typical": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}
# CIEDE2000 distances: about 2 is just noticeable side by side; small dots on a busy map need far more.
MIN_STATUS_DISTANCE = 15.0
MIN_RIDER_DISTANCE = 10.0
MIN_CONTRAST = 3.0


def palettes() -> dict[str, dict[str, str]]:
    text = PALETTE_JS.read_text()
    return {
        theme: dict(re.findall(r'(\w+): "(#[0-9a-f]{6})"', body))
        for theme, body in re.findall(r"(\w+): Object\.freeze\(\{(.*?)\}\)", text, re.S)
    }


def stylesheet_colours() -> dict[str, dict[str, str]]:
    css = PAGE_CSS.read_text()
    blocks = {"light": r":root \{(.*?)\}", "dark": r':root\[data-theme="dark"\] \{(.*?)\}'}
    return {
        theme: dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})\s*;", re.search(pattern, css, re.S).group(1)))
        for theme, pattern in blocks.items()
    }


def linear(hex_colour: str) -> tuple[float, float, float]:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return tuple(channel(int(hex_colour[i : i + 2], 16)) for i in (1, 3, 5))  # type: ignore[return-value]


def seen_by(vision: str, hex_colour: str) -> tuple[float, float, float]:
    rgb = linear(hex_colour)
    return tuple(min(1.0, max(0.0, sum(m * c for m, c in zip(row, rgb, strict=True)))) for row in VISIONS[vision])  # type: ignore[return-value]


def lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b = rgb
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def ciede2000(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_mean**7 / (c_mean**7 + 25**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1, h2 = math.degrees(math.atan2(b1, a1)) % 360, math.degrees(math.atan2(b2, a2)) % 360
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_l, d_c, d_h = l2 - l1, c2 - c1, 2 * math.sqrt(c1 * c2) * math.sin(math.radians(dh / 2))
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        h_mean = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_mean = (h1 + h2) / 2
    else:
        h_mean = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (
        1
        - 0.17 * math.cos(math.radians(h_mean - 30))
        + 0.24 * math.cos(math.radians(2 * h_mean))
        + 0.32 * math.cos(math.radians(3 * h_mean + 6))
        - 0.20 * math.cos(math.radians(4 * h_mean - 63))
    )
    rotation = (
        -math.sin(math.radians(60 * math.exp(-(((h_mean - 275) / 25) ** 2))))
        * 2
        * math.sqrt(c_mean**7 / (c_mean**7 + 25**7))
    )
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / math.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    return math.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + rotation * (d_c / s_c) * (d_h / s_h))


def distance(vision: str, first: str, second: str) -> float:
    return ciede2000(lab(seen_by(vision, first)), lab(seen_by(vision, second)))


def contrast(first: str, second: str) -> float:
    def luminance(hex_colour: str) -> float:
        r, g, b = linear(hex_colour)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def closest_pair(vision: str, colours: dict[str, str], names: tuple[str, ...]) -> tuple[float, str, str]:
    return min((distance(vision, colours[a], colours[b]), a, b) for a, b in itertools.combinations(names, 2))


def test_the_page_lets_readers_zoom_it():
    html = page_app().test_client().get("/").get_data(as_text=True)
    viewports = re.findall(r'<meta name="viewport" content="([^"]*)"', html)
    assert viewports == ["width=device-width, initial-scale=1"]


def test_axe_core_is_for_the_tests_only_and_never_served():
    client = page_app().test_client()
    assert (ROOT / "node_modules" / "axe-core" / "axe.min.js").exists(), "npm ci installs the dev dependency"
    assert client.get("/vendor/axe-core/axe.min.js").status_code == 404
    assert "axe" not in client.get("/").get_data(as_text=True)


def test_canvas_and_stylesheet_hold_the_same_colours_in_both_themes():
    canvas, css = palettes(), stylesheet_colours()
    assert set(canvas) == {"light", "dark"}
    for theme in ("light", "dark"):
        assert {name: canvas[theme][name] for name in CSS_NAMES} == {
            name: css[theme][css_name].lower() for name, css_name in CSS_NAMES.items()
        }, theme


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_status_and_rider_stands_out_from_the_map(theme):
    colours = palettes()[theme]
    weak = {name: round(contrast(colours[name], colours["map"]), 2) for name in STATUSES + RIDERS}
    assert min(weak.values()) >= MIN_CONTRAST, weak


@pytest.mark.parametrize("vision", list(VISIONS))
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_statuses_stay_apart_with_colour_vision_deficiencies(theme, vision):
    colours = palettes()[theme]
    closest, a, b = closest_pair(vision, colours, STATUSES)
    assert closest >= MIN_STATUS_DISTANCE, f"{a} and {b} are {closest:.1f} apart for {vision} in the {theme} theme"
    closest, a, b = closest_pair(vision, colours, RIDERS)
    assert closest >= MIN_RIDER_DISTANCE, f"{a} and {b} are {closest:.1f} apart for {vision} in the {theme} theme"


def test_the_check_catches_the_old_green_and_amber_that_protanopes_could_not_tell_apart():
    old = {"available": "#16a34a", "on_trip": "#2563eb", "offline": "#64748b", "unknown": "#d97706"}
    closest, a, b = closest_pair("protanopia", old, STATUSES)
    assert (a, b) == ("available", "unknown") and closest < 8


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [  # Sharma, Wu and Dalal (2005), the reference pairs of CIEDE2000
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
        ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ],
)
def test_colour_distance_is_ciede2000(first, second, expected):
    assert ciede2000(first, second) == pytest.approx(expected, abs=1e-4)


def test_every_status_has_a_shape_of_its_own_on_the_map_and_in_the_legend():
    text = PALETTE_JS.read_text()
    shapes = dict(re.findall(r'(\w+): "(circle|square|ring|diamond)"', text))
    assert set(shapes) == set(STATUSES) and len(set(shapes.values())) == len(STATUSES)
    layer = (ROOT / "static" / "js" / "layer.js").read_text()
    assert all(f'"{shape}"' in layer for shape in set(shapes.values()) - {"circle"})
    css = PAGE_CSS.read_text()
    assert all(f'.dot[data-status="{status}"]' in css for status in ("on_trip", "offline", "unknown"))
