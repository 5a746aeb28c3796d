"""GET /api/kafka against a real broker, and the page's Kafka section in Debian's chromium.

The dashboard runs as ``python -m dashboard`` on unique topics: the API must name each partition's leader,
replicas and in-sync replicas as the broker says, the end offsets of what the test wrote and the dashboard's
position reaching them; with the broker stopped it must keep its last answer and say since when Kafka is away,
without making anyone wait. The page asks only while its section is open, and draws what the API says.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from fleet.schema import Fix, encode_fix
from tests import test_page_browser as page_tests
from tests.conftest import ARTIFACTS, fleet_topics
from tests.test_page_a11y_browser import assert_axe_passes
from tests.test_page_browser import (
    Dashboard,
    fleet_and_rides_dashboard,
    held_by,
    simulator_service,
    wait_until,
)

LOG_DIR = ARTIFACTS / "api-kafka"
# What a three-broker cluster answers with broker 2 just killed, and Kafka then unreachable (docs/api.md).
BROKER_2_DOWN = {
    "brokers": [
        {"id": 1, "host": "kafka-1", "port": 9092, "up": True},
        {"id": 2, "host": "kafka-2", "port": 9092, "up": False},
        {"id": 3, "host": "kafka-3", "port": 9092, "up": True},
    ],
    "topics": [
        {
            "topic": "<b>fixes</b>",
            "exists": True,
            "partitions": [
                {
                    "partition": 0,
                    "leader": 1,
                    "replicas": [1, 2, 3],
                    "isr": [1, 3],
                    "under_replicated": True,
                    "end_offset": 1_234_567,
                    "position": 1_234_560,
                    "lag": 7,
                },
                {
                    "partition": 1,
                    "leader": None,
                    "replicas": [2],
                    "isr": [2],
                    "under_replicated": False,
                    "end_offset": 88,
                    "position": 88,
                    "lag": 0,
                },
            ],
        },
        {"topic": "rides", "exists": False, "partitions": []},
    ],
    "updated_at": 1795645154.6,
    "unreachable_since": 1795645160.0,
    "error": "Kafka not reachable since 2026-11-25 22:19:20 UTC (KafkaTimeoutError); showing its last answer",
}
browser = page_tests.browser
open_page = page_tests.open_page


@pytest.fixture(scope="module")
def log_dir() -> Any:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return LOG_DIR


def kafka_view(base: str) -> dict[str, Any]:
    response = requests.get(base + "/api/kafka", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.content.isascii()
    return response.json()


def by_topic(view: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {t["topic"]: t["partitions"] for t in view["topics"]}


def send(kafka: KafkaProducer, topic: str, partition: int, count: int) -> None:
    for n in range(count):
        fix = Fix(f"drv-{partition}-{n}", 40.7, -73.9, time.time(), None, None, "available", n)
        kafka.send(topic, key=fix.driver_id.encode(), value=encode_fix(fix), partition=partition)


def test_api_kafka_names_each_partitions_leader_replicas_isr_and_offsets_read(kafka_bootstrap, kafka_admin, log_dir):
    broker_ids = sorted(b["broker_id"] for b in kafka_admin.describe_cluster()["brokers"])
    with fleet_topics(kafka_admin, "test-api-kafka", partitions=2) as topics:
        rides = {"RIDE_REQUEST_TOPIC": topics["requests"], "RIDE_MATCH_TOPIC": topics["matches"]}
        dashboard = Dashboard("dashboard-offsets", kafka_bootstrap, topics["drivers"], log_dir, **rides).start()
        try:
            kafka = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
            send(kafka, topics["drivers"], 0, 3)
            send(kafka, topics["drivers"], 1, 5)
            kafka.send(topics["requests"], b"{}", partition=1)  # refused by the decoder, but it takes an offset
            kafka.flush()
            kafka.close()
            wanted = {topics["drivers"]: [3, 5], topics["requests"]: [0, 1], topics["matches"]: [0, 0]}

            def all_read() -> dict[str, Any] | None:
                view = kafka_view(dashboard.base)
                rows = by_topic(view)
                ends = {name: [p["end_offset"] for p in rows.get(name, [])] for name in wanted}
                caught_up = all(p["position"] == p["end_offset"] and p["lag"] == 0 for ps in rows.values() for p in ps)
                return view if ends == wanted and caught_up else None

            view = wait_until(all_read, 20, "the view shows every record written, read")
        finally:
            dashboard.stop()
    assert [t["topic"] for t in view["topics"]] == [topics["drivers"], topics["requests"], topics["matches"]]
    assert all(t["exists"] for t in view["topics"])
    assert view["error"] is None and view["unreachable_since"] is None
    assert abs(view["updated_at"] - time.time()) < 30
    assert [b["id"] for b in view["brokers"]] == broker_ids and all(b["up"] for b in view["brokers"])
    assert all(isinstance(b["host"], str) and isinstance(b["port"], int) for b in view["brokers"])
    for name, partitions in by_topic(view).items():
        assert [p["partition"] for p in partitions] == [0, 1], name
        for p in partitions:
            assert p["leader"] in broker_ids and p["isr"] == p["replicas"] and not p["under_replicated"]
            if broker_ids == [1]:  # the local single-node broker
                assert (p["leader"], p["replicas"], p["isr"]) == (1, [1], [1])


def test_api_kafka_keeps_its_last_answer_while_the_broker_is_down_and_recovers(private_broker, log_dir):
    bootstrap = private_broker.bootstrap
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    admin.create_topics([NewTopic("fixes", num_partitions=2, replication_factor=1)], wait_for_metadata=True)
    admin.close()
    dashboard = Dashboard(
        "dashboard-broker-down", bootstrap, "fixes", log_dir, DASHBOARD_METADATA_INTERVAL_S="0.5"
    ).start()
    try:
        first = wait_until(lambda: (v := kafka_view(dashboard.base))["updated_at"] and v, 10, "a first answer")
        assert [p["leader"] for p in by_topic(first)["fixes"]] == [1, 1]

        private_broker.stop()
        down = wait_until(lambda: (v := kafka_view(dashboard.base))["unreachable_since"] and v, 20, "Kafka away")
        assert down["error"].startswith("Kafka not reachable since ") and "showing its last answer" in down["error"]
        assert down["updated_at"] >= first["updated_at"], "the last answer is kept, with its time"
        # The last answer may be from the broker's own shutdown, its partitions already without a leader.
        assert [(p["partition"], p["leader"] in (1, None)) for p in by_topic(down)["fixes"]] == [(0, True), (1, True)]
        for path in ("/api/kafka", "/healthz", "/api/drivers"):  # a dead broker holds up no request: the hub runs
            began = time.monotonic()
            requests.get(dashboard.base + path, timeout=10)
            assert time.monotonic() - began < 1.5, path  # a look at a dead broker would take 3 s

        private_broker.start()
        back = wait_until(lambda: (v := kafka_view(dashboard.base))["error"] is None and v, 60, "Kafka answers again")
        assert back["unreachable_since"] is None and back["updated_at"] > down["updated_at"]
        assert [b["up"] for b in back["brokers"]] == [True]
    finally:
        dashboard.stop()


# ---- the page


@pytest.mark.browser
def test_the_kafka_section_asks_only_while_open_and_shows_each_topics_partitions(
    kafka_bootstrap, kafka_admin, log_dir, open_page
):
    drivers = 40
    with fleet_topics(kafka_admin, "test-kafka-panel", partitions=3) as topics:
        simulator = simulator_service(kafka_bootstrap, topics["drivers"], log_dir, drivers, 21)
        with fleet_and_rides_dashboard(kafka_bootstrap, topics, log_dir, simulator, drivers) as live:
            watched = open_page(live.base + "/", 1280, 900)
            page = watched.page
            watched.wait_drawn(held_by(live.base))
            asked = lambda: sum("/api/kafka" in url for url in watched.requests)  # noqa: E731
            page.wait_for_timeout(2500)
            assert asked() == 0, "a closed section asks nothing"

            page.click("#kafka-cluster summary")
            page.wait_for_function("() => document.querySelectorAll('#cluster-topics tbody tr').length === 9")
            tables = page.eval_on_selector_all(
                "#cluster-topics table",
                """tables => tables.map(t => [t.caption.textContent,
                     Array.from(t.tBodies[0].rows, r => Array.from(r.cells, c => c.textContent))])""",
            )
            assert [caption for caption, _ in tables] == [topics["drivers"], topics["requests"], topics["matches"]]
            leader = str(kafka_view(live.base)["brokers"][0]["id"])
            for _, rows in tables:
                assert [row[0] for row in rows] == ["0", "1", "2"]
                assert all(row[1] == leader and row[2] == row[3] for row in rows)
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('#cluster-topics table')[0].tBodies[0].rows)"
                ".every(r => /^[\\d,]+$/.test(r.cells[4].textContent) && r.cells[4].textContent !== '0')"
            )
            brokers = page.eval_on_selector_all("#cluster-brokers li", "items => items.map(i => i.textContent)")
            assert len(brokers) >= 1 and all(b.startswith("broker ") and b.endswith("up") for b in brokers)
            assert page.locator("#cluster-error").is_hidden()
            page.wait_for_timeout(2500)
            assert asked() >= 2, "asks again every 2 s while open"

            page.locator("#kafka-cluster").scroll_into_view_if_needed()
            assert_axe_passes(page, "desktop, light, Kafka section open")
            page.locator("#panel").screenshot(path=log_dir / "kafka-panel.png")

            page.click("#kafka-cluster summary")
            page.wait_for_timeout(300)
            closed_at = asked()
            page.wait_for_timeout(2500)
            assert asked() == closed_at, "closing the section stops the asking"

            page.route("**/api/kafka", lambda route: route.fulfill(json=BROKER_2_DOWN))
            page.click("#kafka-cluster summary")
            page.wait_for_function("() => document.querySelector('.broker[data-up=false]') !== null")
            assert page.text_content("#cluster-error") == BROKER_2_DOWN["error"]
            states = page.eval_on_selector_all(".broker", "items => items.map(i => i.lastChild.textContent)")
            assert states == ["up", "down", "up"]
            isr = page.eval_on_selector_all("tr.under-replicated td.isr", "cells => cells.map(c => c.textContent)")
            assert isr == ["1,3 (under-replicated)"], "the short ISR is marked, in words for screen readers too"
            assert (
                page.text_content(".cluster .warning")
                == "1 partition is under-replicated: fewer in-sync replicas than replicas."
            )
            assert page.text_content("#cluster-topics td.no-leader") == "none"
            assert page.text_content(".cluster-missing") == "rides not created yet"
            assert page.locator("#cluster-topics caption").nth(0).text_content() == "<b>fixes</b>", "names are text"
            page.locator("#kafka-cluster").scroll_into_view_if_needed()
            assert_axe_passes(page, "desktop, light, a broker down")
            page.locator("#panel").screenshot(path=log_dir / "kafka-panel-broker-down.png")
            page.click("#kafka-cluster summary")
            page.unroute("**/api/kafka")

            page.emulate_media(color_scheme="dark")
            page.reload()
            watched.wait_drawn(held_by(live.base))
            assert page.evaluate("document.documentElement.dataset.theme") == "dark"
            page.click("#kafka-cluster summary")
            page.wait_for_function("() => document.querySelectorAll('#cluster-topics tbody tr').length === 9")
            page.locator("#kafka-cluster").scroll_into_view_if_needed()
            assert_axe_passes(page, "desktop, dark, Kafka section open")
            assert watched.errors == [] and watched.policy_violations() == []
