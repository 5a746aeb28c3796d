"""Zones, zone alerts and the supply-and-demand layer on the map page, in Debian's chromium (Playwright), against a
real broker, dashboard and simulator.

A zone is drawn the way a dispatcher draws it: the panel's button, then clicks on the map (leaflet-geoman), then a
name in the panel's form; the dashboard writes it to the compacted zones topic and the page gets it back in the
`zones` event. The alert comes the whole way: a driver of the test's own drives into a zone away from the simulated
fleet, the zone processor (`python -m zones`) writes the enter event in a transaction, the dashboard reads it
read_committed and the page shows it. The module's tests run in file order.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kafka import KafkaAdminClient

from bus.clients import ensure_topics
from fleet.rides import RideRequest
from fleet.schema import Fix
from tests import test_page_browser as page_tests
from tests.conftest import ARTIFACTS, PYTHON, fleet_topics
from tests.stack import Process, send_fix
from tests.test_dashboard import producer
from tests.test_page_a11y_browser import assert_axe_passes
from tests.test_page_browser import HOSTILE_ID, Dashboard, held_by, simulator_service, wait_until
from tests.test_riders_dashboard import send_requests

pytestmark = pytest.mark.browser

DRIVERS = 40
browser = page_tests.browser
open_page = page_tests.open_page
# The polygon's corners, in the map's pixels (left of the panel, above the legend), and a circle's centre and edge.
CORNERS = [(260, 170), (560, 170), (600, 470), (280, 500)]
CIRCLE = [(700, 600), (760, 600)]
# The alert test's zone: a circle north of the simulated fleet's area (New York's box ends at 40.80), where its label
# stands on the open map (south-west of the fleet it would lie under the legend).
FAR = (40.812, -73.975)
PROBE = "probe-driver-1"
MIDTOWN = [[-73.995, 40.745], [-73.965, 40.748], [-73.968, 40.775], [-73.992, 40.772], [-73.995, 40.745]]


@pytest.fixture(scope="module")
def topics(kafka_admin: KafkaAdminClient) -> Iterator[dict[str, str]]:
    with fleet_topics(kafka_admin, "test-zones-page") as names:
        stem = names["drivers"]
        zones, events = stem + "-zones", stem + "-zone-events"
        ensure_topics(kafka_admin, {zones: 1}, {"cleanup.policy": "compact"})
        ensure_topics(kafka_admin, {events: 2})
        try:
            yield {**names, "zones": zones, "zone_events": events, "zones_state": stem + "-zones-state"}
        finally:  # the zone topics, the processor's changelog and any dead-letter topic of this run
            ours = set(names.values())
            kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(stem) and t not in ours])


@pytest.fixture(scope="module")
def dashboard(kafka_bootstrap: str, topics: dict[str, str]) -> Iterator[str]:
    log_dir = ARTIFACTS / "zones-page"
    log_dir.mkdir(parents=True, exist_ok=True)
    simulator = simulator_service(kafka_bootstrap, topics["drivers"], log_dir, DRIVERS, 14, "--offline-share", "0")
    simulator.start()
    env = {
        "RIDE_REQUEST_TOPIC": topics["requests"],
        "RIDE_MATCH_TOPIC": topics["matches"],
        "ZONES_TOPIC": topics["zones"],
        "ZONE_EVENTS_TOPIC": topics["zone_events"],
    }
    dashboard = Dashboard("dashboard", kafka_bootstrap, topics["drivers"], log_dir, **env)
    try:
        dashboard.start()
        wait_until(lambda: held_by(dashboard.base) == DRIVERS, 30, f"the dashboard holds {DRIVERS} drivers")
        yield dashboard.base
    finally:
        dashboard.stop()
        simulator.stop()


def zones_of(base: str) -> list[dict]:
    return requests.get(base + "/api/zones", timeout=5).json()["zones"]


def test_a_zone_drawn_with_the_tool_is_stored_listed_and_named_as_text_and_deleted_from_the_list(dashboard, open_page):
    watched = open_page(dashboard + "/")
    page = watched.page
    watched.wait_drawn(DRIVERS)

    page.click("#zone-draw-polygon")
    assert page.get_attribute("#zone-draw-polygon", "aria-pressed") == "true"
    for x, y in CORNERS:
        page.mouse.click(x, y)
    page.mouse.click(*CORNERS[0])  # the first corner again closes the polygon
    page.locator("#zone-form").wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "zone-name", "the keyboard goes to the name"
    page.keyboard.type(HOSTILE_ID)
    page.keyboard.press("Enter")

    row = page.locator("#zone-list .zone-row")
    row.first.wait_for()
    assert page.text_content("#zone-list .zone-name") == HOSTILE_ID
    assert page.evaluate("fleetDebug.zones().labels") == [HOSTILE_ID], "the name on the map is text"
    assert page.eval_on_selector(".zone-label span", "e => e.childNodes.length === 1 && e.firstChild.nodeType === 3")
    (stored,) = zones_of(dashboard)
    assert stored["name"] == HOSTILE_ID and stored["kind"] == "polygon"
    geometry = stored["feature"]["geometry"]
    assert geometry["type"] == "Polygon" and len(geometry["coordinates"][0]) == len(CORNERS) + 1  # a closed ring
    # The simulated drivers inside are counted, by status, as the dashboard counts them.
    page.wait_for_function(
        "() => /^[1-9]\\d* inside$/.test(document.querySelector('#zone-list .zone-total').textContent)", timeout=5000
    )

    # A circle the dashboard refuses (a stay of more than a week): its sentence is shown, the form stays open.
    page.click("#zone-draw-circle")
    page.mouse.click(*CIRCLE[0])
    page.mouse.click(*CIRCLE[1])
    page.locator("#zone-form").wait_for(state="visible")
    page.fill("#zone-name", "Depot")
    page.fill("#zone-dwell", "99999999")
    page.click("#zone-save")
    error = page.locator("#zone-error")
    error.wait_for(state="visible")
    assert re.search(r"dwell_s .* is outside", error.text_content()), error.text_content()
    assert error.get_attribute("role") == "alert"
    page.fill("#zone-dwell", "120")
    page.click("#zone-save")
    page.wait_for_function("() => fleetDebug.zones().zones === 2")
    circle = next(z for z in zones_of(dashboard) if z["name"] == "Depot")
    assert circle["kind"] == "circle" and circle["dwell_s"] == 120
    assert 200 < circle["feature"]["properties"]["radius_m"] < 5000

    # From the keyboard: the button, then on the map Space at the centre, an arrow key, Space at the edge; Esc drops it.
    page.focus("#zone-draw-circle")
    page.keyboard.press("Enter")
    assert page.get_attribute("#zone-draw-circle", "aria-pressed") == "true"
    page.focus(".leaflet-container")
    page.keyboard.press("Space")
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(400)  # the pan's animation
    page.keyboard.press("Space")
    page.locator("#zone-form").wait_for(state="visible")
    assert page.evaluate("fleetDebug.zones()")["pending"] is True
    page.keyboard.press("Escape")
    page.locator("#zone-form").wait_for(state="hidden")
    assert page.evaluate("fleetDebug.zones()")["pending"] is False
    assert page.evaluate("document.activeElement.id") == "zone-draw-circle", "the keyboard is back on the tool"
    page.click("#zone-draw-polygon")
    page.mouse.click(*CIRCLE[0])
    page.keyboard.press("Escape")  # Esc stops drawing
    assert page.evaluate("fleetDebug.zones().drawing") is None
    assert page.get_attribute("#zone-draw-polygon", "aria-pressed") == "false"

    # Delete asks once more, in the row.
    depot = page.locator("#zone-list .zone-row", has_text="Depot")
    depot.locator(".zone-delete").click()
    assert page.evaluate("document.activeElement.textContent") == "No"
    depot.locator(".zone-delete-yes").click()
    page.wait_for_function("() => fleetDebug.zones().zones === 1")
    wait_until(lambda: [z["name"] for z in zones_of(dashboard)] == [HOSTILE_ID], 10, "the dashboard drops the zone")
    assert page.locator("img[src='x']").count() == 0 and watched.dialogs == [] and watched.errors == []
    assert watched.policy_violations() == []
    # The simulated fleet drives through the polygon: the next test's zone processor would alert about all of it.
    (left,) = zones_of(dashboard)
    assert requests.delete(f"{dashboard}/api/zones/{left['zone_id']}", timeout=10).status_code == 200


def zone_processor(bootstrap: str, topics: dict[str, str]) -> Process:
    args = [PYTHON, "-m", "zones", "--bootstrap-servers", bootstrap, "--driver-topic", topics["drivers"]]
    args += ["--zones-topic", topics["zones"], "--events-topic", topics["zone_events"]]
    args += ["--state-topic", topics["zones_state"], "--group-id", topics["drivers"] + "-zones", "--instance-id", "z1"]
    return Process("zones-page-processor", args)


def test_a_driver_entering_a_zone_is_alerted_fed_toasted_counted_and_flown_to(
    dashboard, kafka_bootstrap, topics, open_page
):
    circle: dict[str, Any] = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [FAR[1], FAR[0]]},
        "properties": {"name": HOSTILE_ID, "radius_m": 500},
    }
    assert requests.post(dashboard + "/api/zones", json=circle, timeout=10).status_code == 201
    processor = zone_processor(kafka_bootstrap, topics)
    processor.log_path.unlink(missing_ok=True)
    processor.start()
    try:
        watched = open_page(dashboard + "/")
        page = watched.page
        watched.wait_drawn(DRIVERS)
        page.wait_for_function("() => fleetDebug.zones().zones === 1")
        processor.wait_for_log(r"processing partitions", timeout=30)
        # The test's driver: 1 km north of the circle's centre, then at its centre a second later.
        kafka = producer(kafka_bootstrap)
        now = time.time()
        send_fix(kafka, topics["drivers"], Fix(PROBE, FAR[0] + 0.009, FAR[1], now - 1, status="available"))
        send_fix(kafka, topics["drivers"], Fix(PROBE, FAR[0], FAR[1], now, status="available"))
        kafka.close()

        alert = page.locator("#alert-feed .alert-row")
        alert.first.wait_for(timeout=15000)
        assert alert.first.locator(".alert-what").text_content() == f"{PROBE} entered {HOSTILE_ID}"
        assert page.text_content("#zone-toast") == f"{PROBE} entered {HOSTILE_ID}"
        assert page.get_attribute("#zone-toast", "role") == "status"
        page.wait_for_function(
            "() => document.querySelector('#zone-list .zone-hour').textContent === 'last hour: 1 in, 0 out'"
        )
        assert alert.count() == 1, "one enter, once"
        # The zone table did not change: the count inside comes with `zone_counts` alone.
        page.wait_for_function(
            "() => document.querySelector('#zone-list .zone-total').textContent === '1 inside'", timeout=5000
        )
        assert page.locator("#alert-zone option").all_text_contents() == ["all zones", HOSTILE_ID]
        assert not page.is_checked("#alert-sound"), "sound is off until the reader turns it on"

        alert.first.click()
        page.wait_for_function("id => fleetDebug.selected() === id", arg=PROBE)
        page.locator("#card").wait_for(state="visible")
        assert page.evaluate("fleetDebug.following()") == PROBE
        page.check("#alert-sound")  # a sample beep, and the choice remembered on this device
        assert page.evaluate("localStorage.getItem('fleet-map.alert-sound')") == "on"
        assert page.evaluate("fleetDebug.alerts().beeps") == 1
        assert page.locator("img[src='x']").count() == 0 and watched.dialogs == [] and watched.errors == []
    finally:
        processor.stop()


def test_density_hexagons_show_where_riders_wait_and_no_driver_is_free(dashboard, kafka_bootstrap, topics, open_page):
    watched = open_page(dashboard + "/")
    page = watched.page
    watched.wait_drawn(held_by(dashboard))  # the simulated fleet and the previous test's driver
    midtown: dict[str, Any] = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [MIDTOWN]}}
    midtown["properties"] = {"name": "Midtown"}
    assert requests.post(dashboard + "/api/zones", json=midtown, timeout=10).status_code == 201  # for the screenshot
    assert page.evaluate("fleetDebug.density().requests") == 0
    page.click("#density-toggle")
    page.wait_for_function("() => fleetDebug.density().drawn > 0", timeout=5000)
    assert page.locator("#density-legend").is_visible()
    assert page.evaluate("fleetDebug.density().cornersFrom") == "h3-js", "h3-js loaded from the dashboard"

    # A rider waiting at the drawn point farthest from every available driver: a cell with riders and no free driver.
    lat, lon = page.evaluate(FARTHEST_FROM_DRIVERS)
    kafka = producer(kafka_bootstrap)
    send_requests(
        kafka, topics["requests"], [RideRequest(f"req-{uuid.uuid4().hex[:6]}", "rider-1", lat, lon, time.time())]
    )
    kafka.close()
    page.wait_for_function("() => fleetDebug.density().shortage >= 1", timeout=8000)
    assert "with riders waiting and no driver free" in page.text_content("#density-note")
    assert page.evaluate("fleetDebug.density().requests") >= 2, "asked again every second"
    canvas = page.evaluate(CANVAS_IS_PAINTED)
    assert canvas["painted"] and canvas["elements"] == 0, "hexagons are pixels on one canvas, not elements"

    page.click("#density-toggle")
    asked = page.evaluate("fleetDebug.density().requests")
    page.wait_for_timeout(1500)
    assert page.evaluate("fleetDebug.density().requests") == asked, "no request while the layer is off"
    page.click("#density-toggle")
    page.wait_for_function("() => fleetDebug.density().shortage >= 1", timeout=5000)
    assert_axe_passes(page, "zones, alerts and density shown")
    page.evaluate("document.getElementById('zones').scrollIntoView({ block: 'start' })")
    page.wait_for_timeout(300)
    watched.screenshot("screenshot-zones")  # copied to docs/screenshot-zones.png
    page.click("#theme-toggle")
    page.wait_for_timeout(1200)  # the next density answer is drawn in the dark theme's colours too
    watched.screenshot("screenshot-zones-dark")
    assert watched.errors == [] and watched.policy_violations() == []


# The drawn point of the map (clear of the panel) farthest from every drawn driver, as [lat, lon].
FARTHEST_FROM_DRIVERS = """() => {
  const name = Object.keys(window).find((k) => k.startsWith("map_") && window[k] instanceof L.Map);
  const map = window[name];
  const drivers = fleetDebug.ids().map((id) => fleetDebug.drawnAt(id)).filter(Boolean);
  let best = null;
  for (let x = 80; x < 860; x += 20) {
    for (let y = 80; y < 680; y += 20) {
      const d = Math.min(...drivers.map(([dx, dy]) => Math.hypot(dx - x, dy - y)));
      if (!best || d > best.d) best = { d, x, y };
    }
  }
  const at = map.containerPointToLatLng([best.x, best.y]);
  return [at.lat, at.lng];
}"""
CANVAS_IS_PAINTED = """() => {
  const canvas = document.querySelector(".density-canvas");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4 * 97) if (data[i] > 0) painted += 1;
  return { painted: painted > 0, elements: canvas.children.length };
}"""
