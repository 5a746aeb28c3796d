"""Riders on the map page in Debian's chromium (Playwright), against a real broker, dashboard and simulator.

The simulator drives the fleet; the test plays rider and matcher itself (fleet/rides.py encoders,
answers in a Kafka transaction), so it knows exactly what the page must show.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from kafka import KafkaAdminClient

from fleet.rides import RideRequest
from tests import test_page_browser as page_tests
from tests.conftest import ARTIFACTS, fleet_topics
from tests.test_dashboard import producer
from tests.test_page_browser import HOSTILE_ID, fleet_and_rides_dashboard, simulator_service
from tests.test_riders_dashboard import answer, in_transaction, send_requests

pytestmark = pytest.mark.browser

DRIVERS = 60
DURATION = re.compile(r"[\d.]+ (ms|s)")
browser = page_tests.browser
open_page = page_tests.open_page


@pytest.fixture(scope="module")
def topics(kafka_admin: KafkaAdminClient) -> Iterator[dict[str, str]]:
    with fleet_topics(kafka_admin, "test-riders-page") as names:
        yield names


@pytest.fixture(scope="module")
def riders_dashboard(kafka_bootstrap: str, topics: dict[str, str]) -> Iterator[str]:
    log_dir = ARTIFACTS / "riders-page"
    log_dir.mkdir(parents=True, exist_ok=True)
    simulator = simulator_service(kafka_bootstrap, topics["drivers"], log_dir, DRIVERS, 11, "--offline-share", "0")
    with fleet_and_rides_dashboard(kafka_bootstrap, topics, log_dir, simulator, DRIVERS) as dashboard:
        yield dashboard.base


# A drawn driver well inside the map (not under the panel), so that its rider 300 m north is on screen too.
DRIVER_IN_VIEW = """() => {
  for (const id of fleetDebug.ids()) {
    const xy = fleetDebug.drawnAt(id);
    if (xy && xy[0] > 120 && xy[1] > 160 && xy[0] < innerWidth - 480 && xy[1] < innerHeight - 120) return id;
  }
  return null;
}"""


def test_a_waiting_rider_gets_a_pin_then_a_line_from_its_driver_the_counts_and_a_card_of_text(
    riders_dashboard, kafka_bootstrap, topics, open_page
):
    page = open_page(riders_dashboard + "/")
    page.wait_drawn(DRIVERS)
    driver_id = page.page.evaluate(DRIVER_IN_VIEW)
    assert driver_id, "no driver drawn inside the map"
    driver = requests.get(f"{riders_dashboard}/api/drivers/{driver_id}", timeout=5).json()
    ride = RideRequest(
        f"req-{uuid.uuid4().hex[:6]}", HOSTILE_ID, driver["latitude"] + 0.0027, driver["longitude"], time.time()
    )
    kafka = producer(kafka_bootstrap)
    send_requests(kafka, topics["requests"], [ride])
    kafka.close()

    page.page.wait_for_function("() => fleetDebug.ridersDrawn() === 1", timeout=10000)
    page.page.wait_for_function("() => document.getElementById('riders-waiting').textContent === '1'")
    assert page.debug("riderLines()") == 0
    page.screenshot("rider-waiting")

    in_transaction(kafka_bootstrap, topics["matches"], [answer(ride, time.time(), driver_id)], commit=True)
    page.page.wait_for_function("() => fleetDebug.riderLines() === 1", timeout=10000)
    page.page.wait_for_function("() => document.getElementById('riders-matched').textContent === '1'")
    assert page.page.text_content("#riders-waiting") == "0"
    assert page.page.text_content("#riders-en-route") == "1"
    assert DURATION.fullmatch(page.page.text_content("#riders-median"))

    x, y = page.debug(f"riderAt({ride.request_id!r})")
    page.page.mouse.click(x, y - 13)  # the pin's head stands above the pick-up point
    page.page.locator("#rider-card").wait_for(state="visible")
    card = {
        field: page.page.text_content(f"#rider-card-{field}")
        for field in ("id", "rider", "outcome", "requested", "wait", "driver", "distance", "eta")
    }
    assert card["id"] == ride.request_id
    assert card["rider"] == HOSTILE_ID, "the hostile rider id is shown as text"
    for field in ("id", "rider", "driver"):  # ids from Kafka cannot reorder the card (right-to-left text, U+202E)
        assert page.page.eval_on_selector(f"#rider-card-{field}", "e => getComputedStyle(e).unicodeBidi") == "isolate"
    assert card["outcome"] == "matched: driver on the way"
    assert card["driver"] == driver_id
    assert card["distance"] == "440 m" and card["eta"] == "64 s"
    assert card["requested"].endswith("ago)") and DURATION.fullmatch(card["wait"])
    page.page.wait_for_timeout(500)
    page.screenshot("rider-card")
    assert page.page.locator("img[src='x']").count() == 0 and page.dialogs == [] and page.errors == []

    page.page.keyboard.press("Escape")
    page.page.locator("#rider-card").wait_for(state="hidden")
