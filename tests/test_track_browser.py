"""A driver's track on the live map, in Debian's chromium: the details card asks for 15 minutes and draws them.

The simulator, dashboard and browser are tests/test_page_browser.py's fixtures (a module of their own here).
"""

from __future__ import annotations

import time

import pytest
import requests
from kafka import KafkaProducer

from fleet.geo import destination
from fleet.schema import Fix, encode_fix
from tests import test_page_browser as page_module
from tests.test_page_a11y_browser import assert_axe_passes, choose_driver
from tests.test_page_browser import held_by, wait_until

# The page module's fixtures (its simulator, dashboard and chromium), under the names the test asks for.
topic, log_dir, simulator, live_dashboard, dashboard, browser, open_page = (
    page_module.topic,
    page_module.log_dir,
    page_module.simulator,
    page_module.live_dashboard,
    page_module.dashboard,
    page_module.browser,
    page_module.open_page,
)

pytestmark = pytest.mark.browser


def moving_driver(dashboard: str) -> str:
    drivers = requests.get(dashboard + "/api/drivers", timeout=5).json()["drivers"]
    return max(drivers, key=lambda d: d["speed_kmh"] or 0)["driver_id"]


def test_the_card_draws_15_minutes_of_track_coloured_by_speed_and_a_click_tells_the_time(dashboard, open_page):
    driver_id = moving_driver(dashboard)
    # A few seconds of driving for the track to hold: the simulator sends one fix a second.
    wait_until(
        lambda: len(requests.get(f"{dashboard}/api/drivers/{driver_id}/track", timeout=10).json()["points"]) >= 8,
        30,
        "the driver has a few fixes in Kafka",
    )
    page = open_page(dashboard + "/")
    page.wait_drawn(held_by(dashboard))
    choose_driver(page.page, driver_id)
    page.page.wait_for_function("() => !fleetDebug.flying()", timeout=5000)
    page.page.click("#track-15")
    page.page.wait_for_function("() => fleetDebug.trackPoints() >= 8", timeout=15000)
    assert page.page.get_attribute("#track-15", "aria-pressed") == "true"
    assert page.debug("trackLines()") >= 1, "the line is drawn, in runs of one speed class each"
    status = page.page.text_content("#track-status")
    assert "fixes" in status and "stop" in status, status
    assert page.page.is_visible("#track-chart")
    assert "km/h" in page.page.get_attribute("#track-chart", "aria-label")
    assert "driver=" in page.page.get_attribute("#track-export", "href")
    page.page.evaluate("() => fleetDebug.following() && document.getElementById('following-stop').click()")
    x, y = page.debug("trackPointAt(0)")
    page.page.mouse.click(x, y)
    popup = page.page.locator(".leaflet-popup-content .track-time")
    popup.wait_for(state="visible", timeout=5000)
    assert popup.text_content()[:2].isdigit() and ":" in popup.text_content()
    path = page.screenshot("track-15-min")
    assert path.stat().st_size > 10_000
    assert_axe_passes(page.page, "track drawn, light theme")
    page.page.click("#track-custom")
    assert page.page.is_visible("#track-from") and page.page.get_attribute("#track-custom", "aria-expanded") == "true"
    page.page.click("#theme-toggle")
    page.page.wait_for_function("() => fleetDebug.theme() === 'dark'")
    assert_axe_passes(page.page, "track drawn, custom window open, dark theme")
    page.page.click("#track-range button[type=submit]")  # the last hour, as the custom fields start
    page.page.wait_for_function("() => /fixes/.test(document.getElementById('track-status').textContent)")
    page.screenshot("track-custom-dark")
    assert page.errors == [] and page.policy_violations() == []
    page.page.click("#track-clear")
    assert page.debug("trackPoints()") == 0


def test_half_an_hour_of_history_gets_a_time_label_every_5_minutes_and_its_stop(
    dashboard, kafka_bootstrap, topic, open_page
):
    driver_id = "hist-track-1"
    now = time.time()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    lat, lon = 40.74, -73.99
    for i in range(180):  # 30 minutes, a fix every 10 s, 8 m/s north-east, standing still for minutes 10 to 13
        if not 60 <= i < 78:
            lat, lon = destination(lat, lon, 45.0, 80.0)
        fix = Fix(driver_id, round(lat, 6), round(lon, 6), now - 1800 + i * 10, status="available")
        producer.send(topic, key=driver_id.encode(), value=encode_fix(fix), timestamp_ms=int(fix.timestamp * 1000))
    producer.flush()
    producer.close()
    wait_until(lambda: requests.get(f"{dashboard}/api/drivers/{driver_id}", timeout=5).ok, 15, "the dashboard holds it")
    page = open_page(dashboard + "/")
    page.wait_drawn(held_by(dashboard))
    choose_driver(page.page, driver_id)
    page.page.click("#track-60")
    page.page.wait_for_function("() => fleetDebug.trackPoints() === 180", timeout=15000)
    page.page.evaluate("() => fleetDebug.following() && document.getElementById('following-stop').click()")
    page.page.click(".leaflet-control-zoom-out")
    page.page.wait_for_timeout(500)
    labels = page.page.eval_on_selector_all(".track-tick span", "spans => spans.map(s => s.textContent)")
    assert len(labels) in (6, 7) and all(len(label) == 5 and label[2] == ":" for label in labels), labels
    assert int(labels[1][3:]) % 5 == 0, "on whole five minutes"
    assert "180 fixes, 1 stop," in page.page.text_content("#track-status")
    page.screenshot("track-30-min-history")

    # The chart is tied to the time bar: a click at its middle replays the fleet from the middle of the track,
    # and while replaying a cursor and a ring on the line mark the replayed time.
    assert not page.debug("trackCursor()")
    chart = page.page.locator("#track-chart")
    box = chart.bounding_box()
    chart.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    page.page.wait_for_function("() => fleetDebug.replay().mode === 'replay'", timeout=10000)
    middle = now - 1800 + (180 - 1) * 10 / 2
    assert abs(page.page.evaluate("() => fleetDebug.replay().t") - middle) < 60
    page.page.wait_for_function("() => fleetDebug.trackCursor()", timeout=5000)
    assert page.page.text_content("#subtitle-mode") == "replaying"
    page.screenshot("track-chart-replaying")
    assert page.errors == [] and page.policy_violations() == []
