"""The map page for a whole shift, in Debian's chromium (Playwright): accessible, phone-proof, keyboard-first, dark.

One dashboard (with riders) and one simulator serve the module, as in test_riders_browser.py. axe-core
(a pinned npm dev dependency, never served by the dashboard) is injected by these tests into the live
page: the page's Content-Security-Policy stays on, and axe must not trip it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from kafka import KafkaAdminClient, KafkaProducer
from playwright.sync_api import Browser, Page

from fleet.geo import AREAS
from fleet.rides import RideRequest
from fleet.schema import Fix, encode_fix
from tests import test_page_browser as page_tests
from tests.conftest import ARTIFACTS, ROOT, fleet_topics
from tests.test_dashboard import producer
from tests.test_page_browser import HOSTILE_ID, Watched, fleet_and_rides_dashboard, held_by, simulator_service
from tests.test_riders_dashboard import answer, in_transaction, send_requests

pytestmark = pytest.mark.browser

DRIVERS = 60
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0 and 2.1, A and AA, and axe's best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, { runOnly: { type: "tag", values: tags } });
  const contrast = result.incomplete.find((rule) => rule.id === "color-contrast") || { nodes: [] };
  return {
    violations: result.violations.map((r) => ({ id: r.id, help: r.help, nodes: r.nodes.map((n) => String(n.target)) })),
    contrastUndecided: contrast.nodes.map((n) => ({ target: String(n.target), key: (n.any[0].data || {}).messageKey })),
  };
}"""
CONTRAST_UNDECIDABLE = {"nonBmp", "shortTextContent", "elmPartiallyObscured", "elmPartiallyObscuring"}
LAYOUTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
# Phones and a tablet, upright and on their side.
SIZES = [(360, 640), (390, 844), (768, 1024), (640, 360), (844, 390), (1024, 768)]
# What must never cover one another: Leaflet's controls, the legend, the panel and the parts of its header, the
# cards, the search. A part inside another (the search in the panel) is not compared with it.
CONTROLS = {
    "zoom": ".leaflet-control-zoom",
    "attribution": ".leaflet-control-attribution",
    "scale": ".leaflet-control-scale",
    "legend": "#legend",
    "panel": "#panel",
    "badge": "#badge",
    "theme button": "#theme-toggle",
    "shortcuts button": "#shortcuts-open",
    "panel button": "#panel-toggle",
    "card": "#card",
    "search": "#search",
}
BOXES = """(controls) => {
  const found = [];
  const panelBox = document.getElementById("panel").getBoundingClientRect();
  for (const [name, selector] of Object.entries(controls)) {
    const element = document.querySelector(selector);
    if (!element || !element.checkVisibility()) continue;
    const whole = element.getBoundingClientRect();
    let box = whole;
    // A part inside the panel is seen only through the panel (it scrolls): what lies outside it covers nothing.
    if (element.id !== "panel" && element.closest("#panel")) {
      const left = Math.max(box.left, panelBox.left);
      const top = Math.max(box.top, panelBox.top);
      const right = Math.min(box.right, panelBox.right);
      const bottom = Math.min(box.bottom, panelBox.bottom);
      box = { left, top, right, bottom, width: Math.max(0, right - left), height: Math.max(0, bottom - top) };
    }
    if (whole.width > 0 && whole.height > 0) found.push({ name, element, box, whole });
  }
  const overlaps = [];
  for (let i = 0; i < found.length; i += 1) {
    for (let j = i + 1; j < found.length; j += 1) {
      const [a, b] = [found[i], found[j]];
      if (a.element.contains(b.element) || b.element.contains(a.element) || !a.box.width || !b.box.width) continue;
      const w = Math.min(a.box.right, b.box.right) - Math.max(a.box.left, b.box.left);
      const h = Math.min(a.box.bottom, b.box.bottom) - Math.max(a.box.top, b.box.top);
      if (w > 0.5 && h > 0.5) overlaps.push(`${a.name} and ${b.name} (${Math.round(w)} x ${Math.round(h)} px)`);
    }
  }
  // Everything stays on the screen, and the header's parts inside the panel (parts further down may scroll in it).
  const panel = document.getElementById("panel");
  const head = panel.querySelector(".panel-head");
  const within = (box, frame) => box.left >= frame.left - 0.5 && box.top >= frame.top - 0.5
    && box.right <= frame.right + 0.5 && box.bottom <= frame.bottom + 0.5;
  const screen = { left: 0, top: 0, right: innerWidth, bottom: innerHeight };
  const frame = panel.getBoundingClientRect();
  const outside = found.filter(({ element, whole }) => (head.contains(element) ? !within(whole, frame)
      : (element === panel || !panel.contains(element)) && !within(whole, screen))).map(({ name }) => name);
  const plus = document.querySelector(".leaflet-control-zoom-in").getBoundingClientRect();
  const hit = document.elementFromPoint(plus.left + plus.width / 2, plus.top + plus.height / 2);
  return { overlaps, outside, plusTappable: Boolean(hit && hit.closest(".leaflet-control-zoom-in")) };
}"""
FOCUS_SHOWN = """() => { const s = getComputedStyle(document.activeElement);
  return s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2; }"""
TWO_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
# Every live region's changes, with their times: what a screen reader would speak, and when.
RECORD_LIVE_REGIONS = """
  window.spoken = [];
  const observer = new MutationObserver((changes) => {
    for (const change of changes) {
      const element = change.target.nodeType === 1 ? change.target : change.target.parentElement;
      const region = element && element.closest("[aria-live], [role=status], [role=alert], [role=log]");
      if (region) window.spoken.push([region.id, performance.now(), region.textContent]);
    }
  });
  // From the end of parsing: the parser's own insertions are the page, not something said.
  document.addEventListener("DOMContentLoaded", () =>
    observer.observe(document, { subtree: true, childList: true, characterData: true }));
"""
# Every animation frame for `ms`: where each drawn driver was, as the page reports it.
SAMPLE_POSITIONS = """(ms) => new Promise((done) => {
  const frames = [];
  const start = performance.now();
  function step(t) {
    frames.push([t, JSON.stringify(fleetDebug.ids().map((id) => fleetDebug.drawnAt(id)))]);
    if (t - start < ms) requestAnimationFrame(step); else done(frames);
  }
  requestAnimationFrame(step);
})"""
COLOUR_AT = """(id) => {
  const [x, y] = fleetDebug.drawnAt(id);
  const [r, g, b] = document.querySelector(".fleet-canvas").getContext("2d")
    .getImageData(Math.round(x * devicePixelRatio), Math.round(y * devicePixelRatio), 1, 1).data;
  return "#" + [r, g, b].map((c) => c.toString(16).padStart(2, "0")).join("");
}"""
LONE_DRIVERS = """(candidates) => {
  const drawn = fleetDebug.ids().map((id) => [id, fleetDebug.drawnAt(id)]).filter(([, xy]) => xy);
  return candidates.filter((id) => {
    const xy = fleetDebug.drawnAt(id);
    if (!xy || xy[0] < 80 || xy[1] < 80 || xy[0] > innerWidth - 420 || xy[1] > innerHeight - 80) return false;
    const apart = (far) => ([ox, oy]) => Math.hypot(ox - xy[0], oy - xy[1]) > far;
    return drawn.every(([other, oxy]) => other === id || apart(20)(oxy)) && fleetDebug.riderPoints().every(apart(32));
  });
}"""
browser = page_tests.browser


@pytest.fixture(scope="module")
def topics(kafka_admin: KafkaAdminClient) -> Iterator[dict[str, str]]:
    with fleet_topics(kafka_admin, "test-a11y-page") as names:
        yield names


@pytest.fixture(scope="module")
def dashboard(kafka_bootstrap: str, topics: dict[str, str]) -> Iterator[str]:
    """The module's dashboard, once it holds the simulated fleet, with one rider waiting and one matched."""
    log_dir = ARTIFACTS / "a11y-page"
    log_dir.mkdir(parents=True, exist_ok=True)
    simulator = simulator_service(kafka_bootstrap, topics["drivers"], log_dir, DRIVERS, 13, "--max-speed-kmh", "90")
    with fleet_and_rides_dashboard(kafka_bootstrap, topics, log_dir, simulator, DRIVERS) as live:
        lat, lon = AREAS["nyc"].center
        rides = [
            RideRequest(f"req-{uuid.uuid4().hex[:6]}", f"rider-{n}", lat + n * 0.004, lon, time.time()) for n in (1, 2)
        ]
        kafka = producer(kafka_bootstrap)
        send_requests(kafka, topics["requests"], rides)
        kafka.close()
        in_transaction(kafka_bootstrap, topics["matches"], [answer(rides[1], time.time(), "drv-00001")], commit=True)
        yield live.base


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Watched]]:
    """Pages in contexts of their own: a layout (desktop, phone), a colour scheme, reduced motion."""
    contexts = []

    def open_(url: str, layout: str = "desktop", **options: Any) -> Watched:
        context = browser.new_context(**LAYOUTS[layout], **options)
        contexts.append(context)
        watched = Watched(context.new_page())
        watched.page.add_init_script(RECORD_LIVE_REGIONS)
        watched.page.goto(url)
        return watched

    yield open_
    for context in contexts:
        context.close()


def run_axe(page: Page) -> dict[str, Any]:
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text())  # through the DevTools protocol: the page's policy is not loosened
    return page.evaluate(RUN_AXE, AXE_TAGS)


def assert_axe_passes(page: Page, where: str) -> None:
    result = run_axe(page)
    found = [f"{v['id']} ({v['help']}): {v['nodes']}" for v in result["violations"]]
    assert found == [], f"axe at {where}: " + "; ".join(found)
    # Contrast axe cannot decide is contrast nobody checked. Text over the map (a translucent panel: "imgNode") must be
    # decidable; only symbols (Leaflet's "−"), single characters and text scrolled half out of the panel may not be.
    undecided = [n for n in result["contrastUndecided"] if n["key"] not in CONTRAST_UNDECIDABLE]
    assert undecided == [], f"axe could not decide the contrast at {where}: {undecided}"


def choose_driver(page: Page, driver_id: str) -> None:
    """By keyboard: / to the search, the id, Enter; the details card opens."""
    page.keyboard.press("/")
    page.keyboard.type(driver_id)
    page.keyboard.press("Enter")
    page.locator("#card").wait_for(state="visible")


def settle(page: Page) -> None:
    page.wait_for_timeout(120)
    page.evaluate(TWO_FRAMES)


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("layout", ["desktop", "phone"])
def test_axe_finds_no_violation_with_drivers_riders_and_details_open(dashboard, open_page, layout, theme):
    watched = open_page(dashboard + "/", layout, color_scheme=theme)
    page = watched.page
    watched.wait_drawn(held_by(dashboard))
    page.wait_for_function(
        "() => fleetDebug.riders() === 2 && document.getElementById('riders-waiting').textContent === '1'"
    )
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    choose_driver(page, "drv-00007")  # on a phone, / also unfolds the panel
    page.wait_for_function("() => /^\\d+$/.test(document.getElementById('card-partition').textContent)")
    assert_axe_passes(page, f"{layout}, {theme}, details open")
    page.screenshot(path=ARTIFACTS / "a11y-page" / f"{layout}-{theme}.png")
    page.fill("#search-input", "drv-00")
    page.wait_for_function("() => document.querySelectorAll('#search-options [role=option]').length === 8")
    assert_axe_passes(page, f"{layout}, {theme}, search offering matches")
    if layout == "phone":
        touch = page.evaluate("getComputedStyle(document.querySelector('.leaflet-container')).touchAction")
        assert touch == "none", "pinching the map zooms the map; pinching elsewhere zooms the page"
    assert watched.errors == [] and watched.policy_violations() == []


def test_no_control_covers_another_on_phones_and_tablets_either_way_up(dashboard, open_page):
    watched = open_page(dashboard + "/")
    page = watched.page
    watched.wait_drawn(held_by(dashboard))
    problems = []
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        for card_open in (False, True):
            if card_open:
                choose_driver(page, "drv-00003")
            elif page.locator("#card").is_visible():
                page.keyboard.press("Escape")
            for collapsed in (True, False):
                if page.get_attribute("#panel", "data-collapsed") != str(collapsed).lower():
                    page.click("#panel-toggle")
                settle(page)
                state = f"{width}x{height}, card {('closed', 'open')[card_open]}, panel {('open', 'folded')[collapsed]}"
                found = page.evaluate(BOXES, CONTROLS)
                problems += [f"{state}: {pair} overlap" for pair in found["overlaps"]]
                problems += [f"{state}: {name} leaves the screen" for name in found["outside"]]
                if not found["plusTappable"]:
                    problems.append(f"{state}: the zoom-in button is covered")
        compact = page.evaluate("fleetDebug.layout().compact")
        legend_in_panel = page.evaluate("document.getElementById('panel').contains(document.getElementById('legend'))")
        assert legend_in_panel == compact == (width <= 720 or height <= 540), f"{width}x{height}"
        page.screenshot(path=ARTIFACTS / "a11y-page" / f"layout-{width}x{height}.png")
    assert problems == [], "\n".join(problems)
    assert watched.errors == []


def test_keyboard_alone_searches_chooses_follows_and_closes(dashboard, open_page):
    watched = open_page(dashboard + "/")
    page = watched.page
    watched.wait_drawn(held_by(dashboard))
    active = "() => document.activeElement.id || document.activeElement.className"
    page.keyboard.press("/")
    assert page.evaluate(active) == "search-input" and page.evaluate(FOCUS_SHOWN)
    page.keyboard.type("drv-0000")
    combobox = page.locator("#search-input")
    page.wait_for_function("() => document.querySelectorAll('#search-options [role=option]').length === 8")
    assert combobox.get_attribute("aria-expanded") == "true"
    assert page.text_content("#search-more") == "1 more match: keep typing"  # drv-00001 ... drv-00009
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert combobox.get_attribute("aria-activedescendant") == "search-option-1"
    assert page.text_content("#search-option-1") == "drv-00002"
    assert page.get_attribute("#search-option-1", "aria-selected") == "true"
    page.screenshot(path=ARTIFACTS / "a11y-page" / "search-options.png")
    page.keyboard.press("Enter")
    page.locator("#card").wait_for(state="visible")
    assert page.text_content("#card-id") == "drv-00002" and watched.debug("following()") == "drv-00002"
    assert combobox.get_attribute("aria-expanded") == "false"

    page.keyboard.press("Tab")  # to "stop" in "Following drv-00002 stop"
    assert page.evaluate(active) == "following-stop" and page.evaluate(FOCUS_SHOWN)
    page.keyboard.press("Enter")
    assert watched.debug("following()") is None
    assert page.evaluate(active) == "card-follow" and page.evaluate(FOCUS_SHOWN)
    page.keyboard.press("f")
    assert watched.debug("following()") == "drv-00002"
    page.keyboard.press("Escape")
    page.locator("#card").wait_for(state="hidden")
    assert watched.debug("following()") is None and watched.debug("selected()") is None

    # The drivers list: Tab reaches it once, arrows move through it, and it holds still meanwhile.
    page.keyboard.press("/")
    page.keyboard.press("Backspace")
    for _ in range(16):  # past the counts and the replay time bar's controls
        page.keyboard.press("Tab")
        if page.evaluate(active) == "driver-row":
            break
    assert page.evaluate(active) == "driver-row" and page.evaluate(FOCUS_SHOWN)
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    row = "() => { const rows = [...document.querySelectorAll('#driver-list .driver-row')];"
    at = page.evaluate(
        row + " return [rows.indexOf(document.activeElement), document.activeElement.closest('li').dataset.driverId]; }"
    )
    assert at[0] == 3
    page.wait_for_timeout(1300)  # the list is refreshed every second, but not under the keyboard
    assert page.evaluate(row + " return document.activeElement.closest('li').dataset.driverId; }") == at[1]
    page.keyboard.press("Enter")
    page.locator("#card").wait_for(state="visible")
    assert page.text_content("#card-id") == at[1]
    page.keyboard.press("Escape")
    page.locator("#card").wait_for(state="hidden")

    # ? opens the shortcuts sheet; it can turn single-key shortcuts off.
    page.keyboard.press("?")
    page.locator("#shortcuts").wait_for(state="visible")
    assert page.evaluate("document.getElementById('shortcuts').contains(document.activeElement)")
    assert_axe_passes(page, "the shortcuts sheet")
    page.screenshot(path=ARTIFACTS / "a11y-page" / "shortcuts.png")
    page.keyboard.press("Tab")
    assert page.evaluate(active) == "shortcuts-enabled"
    page.keyboard.press("Space")
    page.keyboard.press("Escape")
    page.locator("#shortcuts").wait_for(state="hidden")
    assert page.evaluate(active) == "driver-row", "the focus goes back where it was"
    page.keyboard.press("/")
    assert page.evaluate(active) == "driver-row", "with single-key shortcuts off, / does nothing"
    assert watched.errors == [] and watched.policy_violations() == []

    page.reload()  # the switch is remembered on this device
    watched.wait_drawn(held_by(dashboard))
    assert not page.is_checked("#shortcuts-enabled")
    page.keyboard.press("/")
    assert page.evaluate(active) != "search-input", "still off after a reload"


def send_fixes(bootstrap: str, topic: str, ids: list[str]) -> None:
    lat, lon = AREAS["nyc"].center
    kafka = KafkaProducer(bootstrap_servers=bootstrap.split(","))
    for n, driver_id in enumerate(ids):
        fix = Fix(driver_id, lat + 0.002 * n, lon - 0.01, time.time(), 90.0, 10.0, "available", 0)
        kafka.send(topic, key=driver_id.encode(), value=encode_fix(fix))
    kafka.flush()
    kafka.close()


def test_search_offers_matching_ids_prefix_first_as_text_even_a_hostile_one(
    dashboard, kafka_bootstrap, topics, open_page
):
    hostile = "cbx-alpha-" + HOSTILE_ID
    ids = ["cbx-Alpha-1", "cbx-alpha-2", hostile, "x-cbx-alpha-3", *(f"cbx-beta-{n}" for n in range(1, 7))]
    send_fixes(kafka_bootstrap, topics["drivers"], ids)
    watched = open_page(dashboard + "/")
    page = watched.page
    page.wait_for_function("ids => window.fleetDebug && ids.every((id) => fleetDebug.ids().includes(id))", arg=ids)
    options = "() => Array.from(document.querySelectorAll('#search-options [role=option]'), (o) => o.textContent)"
    page.keyboard.press("/")
    page.keyboard.type("CBX-ALPHA")
    page.wait_for_function("() => document.querySelectorAll('#search-options [role=option]').length === 4")
    assert page.evaluate(options) == ["cbx-Alpha-1", "cbx-alpha-2", hostile, "x-cbx-alpha-3"]
    assert page.text_content("#search-more") == ""
    shown = page.locator("#search-options [role=option] .kafka-text").nth(2)
    assert shown.get_attribute("dir") == "auto"
    assert shown.evaluate("(e) => getComputedStyle(e).unicodeBidi") == "isolate"
    page.fill("#search-input", "cbx")
    page.wait_for_function("() => document.getElementById('search-more').textContent !== ''")
    assert page.evaluate(options) == ["cbx-Alpha-1", "cbx-alpha-2", hostile, *(f"cbx-beta-{n}" for n in range(1, 6))]
    assert page.text_content("#search-more") == "2 more matches: keep typing"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.locator("#card").wait_for(state="visible")
    assert page.text_content("#card-id") == hostile
    page.fill("#search-input", "cbx-beta")  # a click chooses too
    page.click("#search-options [role=option] >> text=cbx-beta-4")
    page.wait_for_function("() => document.getElementById('card-id').textContent === 'cbx-beta-4'")
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / "a11y-page" / "search-hostile.png")
    assert page.locator("img[src='x']").count() == 0 and watched.dialogs == [] and watched.errors == []


def lone_available_driver(dashboard: str, page: Page) -> str:
    """A driver drawn well inside the map, 20 px or more from any other driver (32 px from a rider's pin)."""
    drivers = requests.get(dashboard + "/api/drivers", timeout=5).json()["drivers"]
    available = [d["driver_id"] for d in drivers if d["status"] == "available"]
    found = page.evaluate(LONE_DRIVERS, available)
    assert found, "no available driver stands apart from the others"
    return found[0]


def colour_at(page: Page, driver_id: str) -> str:
    """The colour of the canvas at the centre of a driver's marker."""
    return page.evaluate(COLOUR_AT, driver_id)


def test_dark_theme_follows_the_system_and_the_toggle_is_remembered(dashboard, open_page):
    watched = open_page(dashboard + "/", color_scheme="dark")
    page = watched.page
    watched.wait_drawn(held_by(dashboard))
    theme = "() => [document.documentElement.dataset.theme, fleetDebug.theme()]"
    assert page.evaluate(theme) == ["dark", "dark"]
    assert page.get_attribute("#theme-toggle", "aria-pressed") == "true"
    dark = watched.debug("palette()")
    background = page.evaluate("getComputedStyle(document.querySelector('.leaflet-container')).backgroundColor")
    assert background == "rgb({}, {}, {})".format(*(int(dark["map"][i : i + 2], 16) for i in (1, 3, 5)))
    driver_id = lone_available_driver(dashboard, page)
    assert colour_at(page, driver_id) == dark["available"]

    page.emulate_media(color_scheme="light")  # no choice made yet: the page follows the system
    page.wait_for_function("() => fleetDebug.theme() === 'light'")
    light = watched.debug("palette()")
    page.evaluate(TWO_FRAMES)
    assert colour_at(page, driver_id) == light["available"]

    page.click("#theme-toggle")  # against the system: remembered
    assert page.evaluate(theme) == ["dark", "dark"]
    assert page.evaluate("localStorage.getItem('fleet-map.theme')") == "dark"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark", "the choice outlives the page"
    watched.wait_drawn(held_by(dashboard))
    assert page.evaluate(theme) == ["dark", "dark"]
    page.click("#theme-toggle")  # back to what the system says: the page follows the system again
    assert page.evaluate(theme) == ["light", "light"]
    assert page.evaluate("localStorage.getItem('fleet-map.theme')") is None
    assert watched.errors == [] and watched.policy_violations() == []


def change_frames(frames: list[list[Any]]) -> list[float]:
    """The times of the frames in which some driver was drawn somewhere else than in the frame before."""
    return [t for (t, now), (_, before) in zip(frames[1:], frames, strict=False) if now != before]


def test_reduced_motion_turns_gliding_into_jumps_once_a_second(dashboard, open_page):
    watched = open_page(dashboard + "/", reduced_motion="reduce")
    page = watched.page
    watched.wait_drawn(held_by(dashboard))
    assert watched.debug("gliding()") is False
    page.wait_for_timeout(1200)  # past the first frames and the fit to the fleet
    jumps = change_frames(page.evaluate(SAMPLE_POSITIONS, 3200))
    gaps = [round(b - a) for a, b in zip(jumps, jumps[1:], strict=False)]
    assert 2 <= len(jumps) <= 4 and min(gaps) >= 950, f"drivers moved at {jumps} (gaps {gaps} ms)"

    page.emulate_media(reduced_motion="no-preference")
    page.wait_for_function("() => fleetDebug.gliding()")
    assert len(change_frames(page.evaluate(SAMPLE_POSITIONS, 2000))) >= 30, "without the preference, drivers glide"

    page.emulate_media(reduced_motion="reduce")
    choose_driver(page, "drv-00004")
    assert watched.debug("following()") == "drv-00004" and watched.debug("flying()") is False, "no flight either"
    assert watched.errors == []


def test_counts_are_spoken_politely_and_no_region_speaks_at_every_tick(dashboard, open_page):
    watched = open_page(dashboard + "/")
    page = watched.page
    watched.wait_drawn(held_by(dashboard))
    announcer = page.locator("#announcer")
    assert announcer.get_attribute("role") == "status"  # polite
    page.wait_for_timeout(6500)
    spoken = page.evaluate("window.spoken")
    said = [text for region, _, text in spoken if region == "announcer"]
    assert said and said[0].startswith(f"{held_by(dashboard)} drivers: "), spoken
    assert any(text.endswith(". 1 rider waiting.") for text in said), said
    by_region: dict[str, list[float]] = {}
    for region, at, _ in spoken:
        times = by_region.setdefault(region, [])
        if not times or at - times[-1] > 100:  # one change may come as several mutations
            times.append(at)
    hurried = {
        region: times
        for region, times in by_region.items()
        if any(b - a < 4900 for a, b in zip(times, times[1:], strict=False))
    }
    assert hurried == {}, "a live region speaks more often than every 5 s"
    assert not page.locator("#card[aria-live], #rider-card[aria-live]").count(), "cards refresh every second"
