"""The map page in Debian's chromium (Playwright), against a real broker, dashboard and simulator.

One topic, one dashboard and one simulator serve the whole module; the tests run in file order and
the last one stops and restarts the dashboard. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from bench.common import CHROMIUM, CHROMIUM_ARGS
from fleet import frames
from fleet.geo import AREAS
from fleet.schema import Fix, encode_fix
from tests.conftest import ARTIFACTS, PYTHON, ROOT, free_port
from tests.test_frames import D  # the driver shape the encoder reads

pytestmark = pytest.mark.browser

DRIVERS = 120
HOSTILE_ID = "<img src=x onerror=alert(1)>"
# Right-to-left text (Arabic, then Hebrew) behind a RIGHT-TO-LEFT OVERRIDE: shown bare, it would reorder its neighbours.
BIDI_ID = "\u202eسائق-٧ נהג"
# The page forbids eval, and Playwright polls a wait_for_function given as a bare expression with eval: give it
# functions ("() => ...") instead. Every console line and page error of a policy violation names the policy.
CSP_MESSAGE = "Content Security Policy"
# What the page records of each violation, besides the console (the event fires even when the console is quiet).
RECORD_VIOLATIONS = """
  window.cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));
"""
PAGE_ENV = {"TILE_URL": "none", "PYTHONUNBUFFERED": "1"}


class Service:
    """A child process of this module (dashboard or simulator) that a test may stop and start again."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.started_at = time.monotonic()

    def start(self) -> None:
        self.started_at = time.monotonic()
        log = open(self.log_path, "a")  # noqa: SIM115 - the child holds it; closed right after the fork
        try:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def ran_for(self, seconds: float) -> None:
        """Wait until this process has run for ``seconds`` (a simulator's history to replay)."""
        time.sleep(max(0.0, seconds - (time.monotonic() - self.started_at)))


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except requests.RequestException:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


def held_by(base: str, token: str | None = None) -> int:
    """Drivers a dashboard holds: the simulator's, and any a test sent itself."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(base + "/api/drivers", headers=headers, timeout=5).json()["count"]


@pytest.fixture(scope="module")
def topic(kafka_admin: KafkaAdminClient) -> Iterator[str]:
    name = f"test-page-{uuid.uuid4().hex[:8]}"
    kafka_admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=-1)], wait_for_metadata=True)
    yield name
    kafka_admin.delete_topics([name])


@pytest.fixture(scope="module")
def log_dir() -> Path:
    path = ARTIFACTS / "page"
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.log"):
        old.unlink()
    return path


class Dashboard:
    """``python -m dashboard`` on a port of its own, with the page's settings (tiles off)."""

    def __init__(self, name: str, kafka_bootstrap: str, topic: str, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [PYTHON, "-m", "dashboard", "--port", str(self.port), "--topic", topic]
        self.service = Service(name, [*args, "--bootstrap-servers", kafka_bootstrap], {**PAGE_ENV, **env}, log_dir)

    def start(self) -> Dashboard:
        self.service.start()
        try:
            wait_until(
                lambda: requests.get(self.base + "/healthz", timeout=1).status_code == 200,
                30,
                "the dashboard is healthy",
            )
        except BaseException:  # the caller gets no Dashboard to stop
            self.service.stop()
            raise
        return self

    def stop(self) -> None:
        self.service.stop()


def simulator_service(bootstrap: str, topic: str, log_dir: Path, drivers: int, seed: int, *extra: str) -> Service:
    """The simulator: ``drivers`` in New York, one fix each a second, the same ones for the same ``seed``."""
    fleet = ["--drivers", str(drivers), "--interval", "1", "--area", "nyc", "--seed", str(seed), *extra]
    args = [PYTHON, "-m", "simulator", *fleet, "--topic", topic, "--bootstrap-servers", bootstrap]
    return Service("simulator", args, {"PYTHONUNBUFFERED": "1"}, log_dir)


@contextmanager
def fleet_and_rides_dashboard(
    bootstrap: str, topics: dict[str, str], log_dir: Path, simulator: Service, drivers: int
) -> Iterator[Dashboard]:
    """``simulator`` and a dashboard of the drivers and the rides of ``topics``, handed over once it holds all
    ``drivers``; both stopped afterwards."""
    simulator.start()
    rides = {"RIDE_REQUEST_TOPIC": topics["requests"], "RIDE_MATCH_TOPIC": topics["matches"]}
    dashboard = Dashboard("dashboard", bootstrap, topics["drivers"], log_dir, **rides)
    try:
        dashboard.start()
        wait_until(lambda: held_by(dashboard.base) == drivers, 30, f"the dashboard holds {drivers} drivers")
        yield dashboard
    finally:
        dashboard.stop()
        simulator.stop()


@pytest.fixture(scope="module")
def simulator(kafka_bootstrap: str, topic: str, log_dir: Path) -> Iterator[Service]:
    extra = ("--offline-share", "0", "--max-speed-kmh", "90")
    service = simulator_service(kafka_bootstrap, topic, log_dir, DRIVERS, 5, *extra)
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def live_dashboard(kafka_bootstrap: str, topic: str, log_dir: Path, simulator: Service) -> Iterator[Dashboard]:
    """The module's dashboard, once it holds every simulated driver."""
    dashboard = Dashboard("dashboard", kafka_bootstrap, topic, log_dir).start()
    try:
        wait_until(lambda: held_by(dashboard.base) == DRIVERS, 30, f"the dashboard holds all {DRIVERS} drivers")
        yield dashboard
    finally:
        dashboard.stop()


@pytest.fixture(scope="module")
def dashboard(live_dashboard: Dashboard) -> str:
    return live_dashboard.base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page with everything it requested, every dialog it opened, every script error it hit and its console."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("dialog", self._dialog)
        page.add_init_script(RECORD_VIOLATIONS)

    def policy_violations(self) -> list[str]:
        """What the Content-Security-Policy blocked: console lines and errors naming it, and the page's own record."""
        said = [line for line in self.console + self.errors if CSP_MESSAGE.lower() in line.lower()]
        return said + self.page.evaluate("window.cspViolations || []")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def debug(self, expression: str) -> Any:
        return self.page.evaluate(f"window.fleetDebug && fleetDebug.{expression}")

    def wait_drawn(self, count: int, timeout_s: float = 15) -> None:
        try:
            self.page.wait_for_function(
                "n => window.fleetDebug && fleetDebug.drawn() === n", arg=count, timeout=timeout_s * 1000
            )
        except PlaywrightError:
            held, drawn = self.debug("drivers()"), self.debug("drawn()")
            raise AssertionError(f"expected {count} drivers drawn; the page holds {held} and drew {drawn}") from None

    def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / "page" / f"{name}.png"
        self.page.screenshot(path=path)
        return path


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Watched]]:
    contexts = []

    def open_(url: str, width: int = 1280, height: int = 800) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        watched = Watched(context.new_page())
        watched.page.goto(url)
        return watched

    yield open_
    for context in contexts:
        context.close()


def test_page_loads_without_internet_and_asks_only_its_own_server(dashboard, open_page):
    page = open_page(dashboard + "/")
    page.wait_drawn(held_by(dashboard))
    page.page.wait_for_function("() => document.body.dataset.connection === 'live'")
    page.screenshot("loaded-1280x800")
    ws_origin = dashboard.replace("http://", "ws://")
    outside = [url for url in page.requests if not url.startswith((dashboard + "/", ws_origin + "/"))]
    assert outside == []
    assert any("/vendor/leaflet/dist/leaflet.js" in url for url in page.requests)
    assert page.errors == []


def test_page_draws_every_simulated_driver_and_they_move(dashboard, open_page):
    page = open_page(dashboard + "/")
    page.wait_drawn(DRIVERS)
    assert page.debug("drivers()") == DRIVERS
    for _ in range(2):  # closer in, so that a few seconds of driving is a few pixels
        page.page.click(".leaflet-control-zoom-in")
        page.page.wait_for_timeout(400)
    before = page.debug("ids().map(id => [id, fleetDebug.drawnAt(id)])")
    first = page.screenshot("moving-1")
    page.page.wait_for_timeout(2000)
    after = dict(page.debug("ids().map(id => [id, fleetDebug.drawnAt(id)])"))
    second = page.screenshot("moving-2")
    moved = [id_ for id_, xy in before if xy and after.get(id_) and math.dist(xy, after[id_]) >= 1.5]
    assert moved, f"no driver moved on screen in 2 s: {before[:5]} -> {list(after.items())[:5]}"
    assert first.read_bytes() != second.read_bytes()
    x, y = page.debug(f"drawnAt({moved[0]!r})")
    alpha = page.page.evaluate(
        "([x, y]) => document.querySelector('.fleet-canvas').getContext('2d')"
        "  .getImageData(Math.round(x * devicePixelRatio), Math.round(y * devicePixelRatio), 1, 1).data[3]",
        [x, y],
    )
    assert alpha > 0, "the canvas has a driver where the page says it drew one"


def test_search_flies_to_a_driver_and_follows_it_until_the_user_pans(dashboard, open_page):
    page = open_page(dashboard + "/")
    page.wait_drawn(held_by(dashboard))
    moving = max(
        requests.get(dashboard + "/api/drivers", timeout=5).json()["drivers"], key=lambda d: d["speed_kmh"] or 0
    )
    page.page.keyboard.press("/")
    assert page.page.evaluate("document.activeElement.id") == "search-input"
    page.page.keyboard.type(moving["driver_id"])
    page.page.keyboard.press("Enter")
    assert page.debug("following()") == moving["driver_id"]
    page.page.wait_for_function("() => !fleetDebug.flying()", timeout=5000)
    centre = page.page.evaluate("[innerWidth / 2, innerHeight / 2]")
    positions = []
    for _ in range(3):
        page.page.wait_for_timeout(700)
        positions.append(page.debug(f"drawnAt({moving['driver_id']!r})"))
        assert math.dist(positions[-1], centre) <= 2.5, f"{positions} not at the centre {centre}"
    page.screenshot("following")
    assert page.page.text_content("#card-id") == moving["driver_id"]
    page.page.mouse.move(300, 400)
    page.page.mouse.down()
    page.page.mouse.move(200, 300, steps=5)
    page.page.mouse.up()
    assert page.debug("following()") is None


def test_clicking_a_driver_opens_its_details_and_escape_closes_them(dashboard, open_page):
    page = open_page(dashboard + "/")
    page.wait_drawn(held_by(dashboard))
    isolated = page.page.evaluate(ISOLATED_DRIVER)
    assert isolated, "no driver stands apart from the others"
    driver_id, (x, y) = isolated
    page.page.mouse.click(x, y)
    card = page.page.locator("#card")
    card.wait_for(state="visible")
    assert page.page.text_content("#card-id") == driver_id
    page.page.wait_for_function("() => /^\\d+$/.test(document.getElementById('card-partition').textContent)")
    expected = requests.get(f"{dashboard}/api/drivers/{driver_id}", timeout=5).json()
    assert page.page.text_content("#card-partition") == str(expected["partition"])
    assert page.page.text_content("#card-offset").replace(",", "").isdigit()
    assert page.page.text_content("#card-age").endswith("ago")
    assert page.debug("trailPoints()") >= 2, "the driver's trail is drawn"
    page.screenshot("details-card")
    page.page.keyboard.press("Escape")
    card.wait_for(state="hidden")


def test_kafka_section_shows_each_partition_with_the_dashboards_position(dashboard, topic, open_page):
    page = open_page(dashboard + "/")
    page.page.wait_for_function("() => document.querySelectorAll('#kafka-partitions tr').length === 3", timeout=10000)
    rows = page.page.eval_on_selector_all(
        "#kafka-partitions tr", "rows => rows.map(row => Array.from(row.cells, cell => cell.textContent))"
    )
    assert [row[0] for row in rows] == ["0", "1", "2"]
    for _, end_offset, position, lag in rows:
        end, read, behind = (int(text.replace(",", "")) for text in (end_offset, position, lag))
        # The end offset is probed once a second while the position moves on: it may run ahead of the probe.
        assert end > 0 and read > 0 and behind == max(0, end - read)
    assert page.page.text_content("#topic") == topic
    assert int(page.page.text_content("#m-fixes").replace(",", "")) > 0
    page.screenshot("kafka-section")


def test_drivers_list_sorts_by_last_seen_both_ways(dashboard, open_page):
    page = open_page(dashboard + "/")
    page.page.wait_for_function("() => document.querySelectorAll('#driver-list li').length >= 10")
    newest_first = _ages(page)
    assert newest_first == sorted(newest_first)
    page.page.click("#drivers-sort")
    assert page.page.text_content("#drivers-sort") == "last seen: oldest first"
    oldest_first = _ages(page)
    assert oldest_first == sorted(oldest_first, reverse=True)
    assert oldest_first[0] >= newest_first[0]


def _ages(page: Watched) -> list[float]:
    """Seconds since each listed driver was last seen, as the list shows them."""
    units = {"s": 1, "min": 60, "h": 3600}
    texts = page.page.eval_on_selector_all("#driver-list .age", "ages => ages.map(a => a.textContent)")
    return [float(value) * units[unit] for value, unit, _ in (text.split() for text in texts)]


# A driver with no other within 14 px, so that a click at its position can only mean it.
ISOLATED_DRIVER = """() => {
  const drawn = fleetDebug.ids().map(id => [id, fleetDebug.drawnAt(id)]).filter(([, xy]) => xy);
  for (const [id, [x, y]] of drawn) {
    if (x < 80 || y < 80 || x > innerWidth - 420 || y > innerHeight - 80) continue;
    if (drawn.every(([other, [ox, oy]]) => other === id || Math.hypot(ox - x, oy - y) > 14)) return [id, [x, y]];
  }
  return null;
}"""


def send_one_fix(bootstrap: str, topic: str, fix: Fix) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","))
    producer.send(topic, key=fix.driver_id.encode(), value=encode_fix(fix))
    producer.flush()
    producer.close()


def test_hostile_driver_id_is_shown_as_text_and_runs_nothing(dashboard, kafka_bootstrap, topic, open_page):
    lat, lon = AREAS["nyc"].center
    send_one_fix(kafka_bootstrap, topic, Fix(HOSTILE_ID, lat, lon, time.time(), 45.0, 12.0, "available", 0))
    page = open_page(dashboard + "/")
    page.page.wait_for_function("id => window.fleetDebug && fleetDebug.ids().includes(id)", arg=HOSTILE_ID)
    page.page.fill("#search-input", HOSTILE_ID)
    page.page.keyboard.press("Enter")
    page.page.locator("#card").wait_for(state="visible")
    assert page.page.text_content("#card-id") == HOSTILE_ID
    assert page.page.text_content("#following-id") == HOSTILE_ID
    assert page.page.locator(".driver-row .driver-id", has_text=HOSTILE_ID).count() == 1
    page.page.wait_for_timeout(1000)
    page.screenshot("hostile-id")
    assert page.page.locator("img[src='x']").count() == 0
    assert page.dialogs == []
    assert not any(url.endswith("/x") for url in page.requests)


def test_page_runs_under_its_content_security_policy_without_a_violation(dashboard, open_page):
    page = open_page(dashboard + "/")
    policy = requests.get(dashboard + "/", timeout=5).headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy and "'unsafe-inline'" not in policy
    page.wait_drawn(held_by(dashboard))
    page.page.wait_for_function("() => document.body.dataset.connection === 'live'")
    isolated = page.page.evaluate(ISOLATED_DRIVER)
    assert isolated, "no driver stands apart from the others"
    page.page.mouse.click(*isolated[1])  # the details card fetches the API; Leaflet draws the trail
    page.page.wait_for_function("() => /^\\d+$/.test(document.getElementById('card-partition').textContent)")
    assert page.debug("trailPoints()") >= 1
    page.page.wait_for_timeout(1500)
    assert any(url.startswith("ws://") for url in page.requests), "Socket.IO upgraded to a websocket under connect-src"
    assert page.policy_violations() == []
    assert page.errors == []


def test_tiles_from_the_configured_server_are_allowed_by_the_policy(kafka_bootstrap, topic, log_dir, open_page):
    """A tile server with {s} subdomains: its requests fail here (no such host), but the policy lets them go."""
    tiles = "https://{s}.tile.example.invalid/{z}/{x}/{y}.png"
    tiled = Dashboard("dashboard-tiles", kafka_bootstrap, topic, log_dir, TILE_URL=tiles).start()
    try:
        page = open_page(tiled.base + "/")
        page.wait_drawn(held_by(tiled.base), timeout_s=20)
        page.page.wait_for_timeout(1000)
        assert any(".tile.example.invalid/" in url for url in page.requests), "the page asked the tile server"
        assert page.policy_violations() == []
    finally:
        tiled.stop()


# How an element lays out its text: [tag, computed unicode-bidi, text].
ISOLATION = "(element) => [element.tagName, getComputedStyle(element).unicodeBidi, element.textContent]"
# Where each piece of a sentence is drawn: [left, right] of the text before the id, of the id, of the text after.
SENTENCE_BOXES = """(element) => Array.from(element.childNodes, (node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  const box = range.getBoundingClientRect();
  return [box.left, box.right];
})"""


def test_right_to_left_ids_are_isolated_and_leave_the_text_around_them_in_order(
    dashboard, kafka_bootstrap, topic, open_page
):
    lat, lon = AREAS["nyc"].center
    send_one_fix(kafka_bootstrap, topic, Fix(BIDI_ID, lat + 0.01, lon, time.time(), 45.0, 12.0, "available", 0))
    page = open_page(dashboard + "/")
    page.page.wait_for_function("id => window.fleetDebug && fleetDebug.ids().includes(id)", arg=BIDI_ID)
    page.page.fill("#search-input", BIDI_ID)
    page.page.keyboard.press("Enter")
    page.page.locator("#card").wait_for(state="visible")
    row = page.page.locator(".driver-row", has=page.page.locator(".driver-id", has_text=BIDI_ID))
    shown = {
        "card": page.page.locator("#card-id"),
        "following": page.page.locator("#following-id"),
        "list": row.locator(".driver-id"),
    }
    for where, element in shown.items():
        _, bidi, text = element.evaluate(ISOLATION)
        assert (bidi, text) == ("isolate", BIDI_ID), where
    id_box, age_box = (row.locator(sel).bounding_box() for sel in (".driver-id", ".age"))
    assert id_box["x"] + id_box["width"] <= age_box["x"] + 0.5, "the age stays after the id in the list"
    following = page.page.locator("#following").bounding_box()
    stop = page.page.locator("#following-stop").bounding_box()
    assert following["x"] < stop["x"], "'stop' stays after the followed id"
    page.screenshot("bidi-id")

    missing = "\u202eלא-קיים"
    page.page.keyboard.press("Escape")
    page.page.fill("#search-input", missing)
    page.page.keyboard.press("Enter")
    message = page.page.locator("#search-message")
    page.page.wait_for_function("() => document.getElementById('search-message').textContent !== ''")
    assert message.text_content() == f"No driver “{missing}” on the map."
    isolated = message.locator("bdi")
    assert isolated.evaluate(ISOLATION) == ["BDI", "isolate", missing]
    (before_left, before_right), (id_left, id_right), (after_left, _) = message.evaluate(SENTENCE_BOXES)
    assert before_left < before_right <= id_left + 0.5 and id_right <= after_left + 0.5, "the sentence reads in order"
    page.screenshot("bidi-search-message")
    assert page.errors == [] and page.policy_violations() == []


def test_records_decode_in_the_browser_as_the_server_encodes_them(dashboard, open_page):
    page = open_page(dashboard + "/")
    t0 = 1_795_000_000.0
    drivers = [
        D(0, "a", 40.712776, -74.005974, t0 + 0.25, 359.9, 42.5, "available"),
        D(7, "b", -33.868820, 151.209296, t0 - 3.5, None, None, None),
        D(2**32 - 1, "c", 89.999999, -179.999999, t0 + 1.0, 0.0, 0.0, "offline"),
        D(9, "d", 51.5, -0.12, t0 + 0.001, 180.0, 6553.4, "on_trip"),
    ]
    data = frames.encode_records(drivers, t0)
    decoded = page.page.evaluate(
        """async ([bytes, t0]) => {
          const { decodeRecords, headingDegrees, speedKmh, STATUS_NAMES } = await import("/static/js/protocol.js");
          const b = decodeRecords(new Uint8Array(bytes).buffer, t0);
          return Array.from({ length: b.count }, (_, i) => [b.idx[i], b.lat[i], b.lon[i], b.ts[i],
            headingDegrees(b.heading[i]), speedKmh(b.speed[i]), STATUS_NAMES[b.status[i]]]);
        }""",
        [list(data), t0],
    )
    expected = [
        [r.idx, r.latitude, r.longitude, r.timestamp, r.heading, r.speed_kmh, r.status or "unknown"]
        for r in frames.decode_records(data, t0)
    ]
    assert decoded == expected


def test_page_projects_positions_exactly_like_leaflet(dashboard, open_page):
    page = open_page(dashboard + "/")
    worst = page.page.evaluate(
        """async () => {
          const { worldX, worldY } = await import("/static/js/fleet.js");
          let worst = 0;
          for (const [lat, lon] of [[40.75, -73.98], [-33.87, 151.2], [0, 0], [84.9, 179.9], [-84.9, -179.9]]) {
            const p = L.CRS.EPSG3857.latLngToPoint(L.latLng(lat, lon), 18);
            const scale = L.CRS.EPSG3857.scale(18);
            worst = Math.max(worst, Math.abs(worldX(lon) * scale - p.x), Math.abs(worldY(lat) * scale - p.y));
          }
          return worst;
        }"""
    )
    assert worst < 0.01, f"{worst} px off at zoom 18"


def test_phone_width_collapses_the_panel_to_a_summary(dashboard, open_page):
    page = open_page(dashboard + "/", width=390, height=844)
    page.wait_drawn(held_by(dashboard))
    panel = page.page.locator("#panel")
    assert panel.get_attribute("data-collapsed") == "true"
    assert page.page.locator("#panel-body").is_hidden()
    page.page.wait_for_function("() => document.getElementById('summary-available').textContent !== '–'", timeout=10000)
    page.screenshot("phone-collapsed")
    page.page.click("#panel-toggle")
    assert page.page.locator("#panel-body").is_visible()
    page.screenshot("phone-expanded")


def test_page_with_a_token_connects_with_it(kafka_bootstrap, topic, log_dir, dashboard, open_page):
    guarded = Dashboard("dashboard-token", kafka_bootstrap, topic, log_dir, DASHBOARD_TOKEN="page-t0ken").start()
    try:
        assert requests.get(guarded.base + "/", timeout=5).status_code == 401
        page = open_page(guarded.base + "/?token=page-t0ken")
        page.wait_drawn(held_by(guarded.base, "page-t0ken"), timeout_s=20)
        assert page.page.url == guarded.base + "/"
        assert "page-t0ken" not in page.page.content(), "the HttpOnly cookie is enough: the page never holds the token"
        assert page.page.evaluate("document.body.dataset.connection") == "live"
        assert page.errors == []
    finally:
        guarded.stop()


def test_page_reconnects_when_the_dashboard_comes_back_without_a_reload(live_dashboard, open_page):
    page = open_page(live_dashboard.base + "/")
    page.wait_drawn(held_by(live_dashboard.base))
    page.page.evaluate("window.notReloaded = true")
    live_dashboard.stop()
    page.page.wait_for_function("() => document.body.dataset.connection === 'reconnecting'", timeout=10000)
    assert page.page.text_content("#badge") == "reconnecting"
    page.screenshot("reconnecting")
    live_dashboard.start()  # same port
    page.page.wait_for_function("() => document.body.dataset.connection === 'live'", timeout=15000)
    page.wait_drawn(held_by(live_dashboard.base), timeout_s=15)
    assert page.page.evaluate("window.notReloaded") is True
    page.screenshot("reconnected")
