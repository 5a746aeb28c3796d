"""Zones and alerts through one real dashboard process and a real broker: /api/zones writes the compacted
``zones`` topic and counts the drivers inside, committed ``zone-events`` reach the ``zone_alerts`` event,
and ``/api/density`` counts supply and demand per H3 cell.

One dashboard serves the whole module (its start is most of the time); each test makes zones of its own.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import h3
import pytest
import requests
import socketio
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from bench.common import dashboard_command
from dashboard.zones import InsideCounter
from fleet.rides import RideRequest
from fleet.schema import Fix
from fleet.state import FleetState
from fleet.zones import ZoneEvent, ZoneTable, encode_event, parse_zone
from tests.conftest import free_port
from tests.stack import Process, TopicReader, http_status, producer, send_fix, send_request
from tests.test_dashboard import wait_until

ZONES_MAX = 6
HOSTILE_NAME = '<img src=x onerror=alert(1)>\u202e"</script>&amp;'


@pytest.fixture(scope="module")
def fleet(kafka_bootstrap: str, kafka_admin: KafkaAdminClient) -> Iterator[dict[str, Any]]:
    """Topics of this module's own and one dashboard on them; ``zone-events`` is created by the alert test."""
    tag = f"zones-dash-{uuid.uuid4().hex[:8]}"
    topics = {
        "drivers": f"{tag}-drv",
        "requests": f"{tag}-req",
        "matches": f"{tag}-match",
        "zones": f"{tag}-zones",
        "events": f"{tag}-zone-events",
    }
    kafka_admin.create_topics(
        [NewTopic(topics[t], 2, replication_factor=-1) for t in ("drivers", "requests", "matches")],
        wait_for_metadata=True,
    )
    port = free_port()
    env = {
        "RIDE_REQUEST_TOPIC": topics["requests"],
        "RIDE_MATCH_TOPIC": topics["matches"],
        "ZONES_TOPIC": topics["zones"],
        "ZONE_EVENTS_TOPIC": topics["events"],
        "ZONES_MAX": str(ZONES_MAX),
        "TILE_URL": "none",
    }
    process = Process(f"{tag}-dashboard", dashboard_command(port, topics["drivers"], kafka_bootstrap), env).start()
    base = f"http://127.0.0.1:{port}"
    kafka = producer(kafka_bootstrap)
    try:
        wait_until(lambda: http_status(base + "/healthz") == 200, 30, "the dashboard is healthy")
        yield {"base": base, "kafka": kafka, "bootstrap": kafka_bootstrap, "admin": kafka_admin, **topics}
    finally:
        kafka.close()
        process.stop()
        existing = set(kafka_admin.list_topics())
        kafka_admin.delete_topics([t for name in topics.values() for t in (name, name + ".dlq") if t in existing])
    assert "Traceback" not in process.log(), process.log()[-3000:]


def polygon(name: str, lat: float, lon: float, half: float = 0.01) -> dict[str, Any]:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        "properties": {"name": name},
    }


def circle(name: str, lat: float, lon: float, radius_m: float) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"name": name, "radius_m": radius_m, "dwell_s": 60},
    }


def post(base: str, feature: Any) -> requests.Response:
    return requests.post(base + "/api/zones", json=feature, timeout=15)


def zone(base: str, zone_id: str) -> dict[str, Any] | None:
    response = requests.get(f"{base}/api/zones/{zone_id}", timeout=5)
    return response.json() if response.status_code == 200 else None


def records_of(fleet: dict[str, Any]) -> list:
    """Every record of the zones topic (none before it exists)."""
    if fleet["zones"] not in fleet["admin"].list_topics():
        return []
    reader = TopicReader(fleet["bootstrap"], fleet["zones"])
    try:
        return reader.read_to_end()
    finally:
        reader.close()


def send_fixes(fleet: dict[str, Any], fixes: list[Fix]) -> None:
    for fix in fixes:
        send_fix(fleet["kafka"], fleet["drivers"], fix)


def test_a_polygon_and_a_circle_are_listed_and_count_the_drivers_inside_by_status(fleet):
    base = fleet["base"]
    health = requests.get(base + "/healthz", timeout=5).json()
    assert "not created yet" in health["feeds"]["zone_events"]["error"], "no zone processor yet, and healthy"
    made = post(base, polygon("Midtown", 40.75, -73.98))
    assert made.status_code == 201, made.text
    square = made.json()["zone_id"]
    made = post(base, circle("Airport", 40.64, -73.78, 500))
    assert made.status_code == 201, made.text
    round_zone = made.json()["zone_id"]

    now = time.time()
    send_fixes(
        fleet,
        [
            Fix("drv-a", 40.751, -73.981, now, status="available"),
            Fix("drv-b", 40.749, -73.975, now, status="on_trip"),
            Fix("drv-c", 40.641, -73.781, now, status="offline"),
            Fix("drv-d", 40.70, -74.01, now, status="available"),  # in neither
        ],
    )
    wait_until(
        lambda: (z := zone(base, square)) and z["inside"] == {"available": 1, "on_trip": 1, "other": 0, "total": 2},
        10,
        "the square counts drv-a available and drv-b on a trip",
    )
    assert sorted(zone(base, square)["drivers"]) == ["drv-a", "drv-b"]
    airport = zone(base, round_zone)
    assert airport["inside"] == {"available": 0, "on_trip": 0, "other": 1, "total": 1}
    assert airport["drivers"] == ["drv-c"] and airport["kind"] == "circle" and airport["dwell_s"] == 60
    listed = {z["zone_id"]: z for z in requests.get(base + "/api/zones", timeout=5).json()["zones"]}
    assert {square, round_zone} <= set(listed)
    assert listed[square]["name"] == "Midtown" and listed[square]["feature"]["geometry"]["type"] == "Polygon"
    assert listed[round_zone]["feature"]["properties"]["radius_m"] == 500

    keys = {r.key.decode() for r in records_of(fleet)}
    assert {square, round_zone} <= keys
    configs = fleet["admin"].describe_configs([ConfigResource(ConfigResourceType.TOPIC, fleet["zones"])])
    policy = configs["topic"][fleet["zones"]]["cleanup.policy"]["value"]
    assert policy == "compact", "the dashboard created the zones topic compacted"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {  # a bow tie: its edges cross
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
                "properties": {"name": "bow tie"},
            },
            "bad_geometry",
        ),
        (
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [
                                -73.9 + 0.01 * math.cos(2 * math.pi * i / 1200),
                                40.7 + 0.01 * math.sin(2 * math.pi * i / 1200),
                            ]
                            for i in (*range(1200), 0)
                        ]
                    ],
                },
                "properties": {"name": "too fine"},
            },
            "too_many_vertices",
        ),
        (circle("Long Island", 40.8, -73.2, 60_000), "radius_too_large"),
        ({"type": "FeatureCollection", "features": []}, "not_a_feature"),
        ("not a zone", "not_object"),
    ],
)
def test_an_invalid_zone_gets_400_with_its_reason_and_nothing_is_written(fleet, body, reason):
    before = len(records_of(fleet))
    response = post(fleet["base"], body)
    assert response.status_code == 400 and response.json()["error"] == reason, response.text
    assert response.json()["detail"]
    assert len(records_of(fleet)) == before, "nothing reached the zones topic"


def test_a_zone_must_be_json_and_not_too_large(fleet):
    base = fleet["base"]
    before = len(records_of(fleet))
    response = requests.post(base + "/api/zones", data="{}", headers={"Content-Type": "text/plain"}, timeout=5)
    assert response.status_code == 415, "a form of another site cannot create zones"
    response = requests.post(base + "/api/zones", data=b"{" * 10, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "not_json"
    huge = json.dumps(polygon("x" * 300_000, 40.7, -73.9))
    response = requests.post(base + "/api/zones", data=huge, headers={"Content-Type": "application/json"}, timeout=5)
    assert response.status_code == 413
    assert len(records_of(fleet)) == before


def test_delete_writes_a_tombstone_and_the_zone_is_gone(fleet):
    base = fleet["base"]
    zone_id = post(base, polygon("Short-lived", 40.72, -74.0)).json()["zone_id"]
    assert zone(base, zone_id) is not None, "the writer reads its own write"
    response = requests.delete(f"{base}/api/zones/{zone_id}", timeout=15)
    assert response.status_code == 200 and response.json() == {"zone_id": zone_id, "deleted": True}
    assert zone(base, zone_id) is None
    assert requests.delete(f"{base}/api/zones/{zone_id}", timeout=5).status_code == 404
    assert requests.get(f"{base}/api/zones/no-such-zone", timeout=5).status_code == 404
    mine = [r for r in records_of(fleet) if r.key.decode() == zone_id]
    assert [r.value is None for r in mine] == [False, True], "the zone, then its tombstone"


def test_past_zones_max_a_new_zone_is_refused_with_409(fleet):
    base = fleet["base"]
    made = []
    while len(made) < ZONES_MAX + 1:
        response = post(base, polygon(f"filler {len(made)}", 41.0 + len(made) * 0.1, -74.0))
        if response.status_code != 201:
            break
        made.append(response.json()["zone_id"])
    assert response.status_code == 409 and response.json()["error"] == "too_many_zones", response.text
    assert requests.get(base + "/api/zones", timeout=5).json()["count"] == ZONES_MAX
    for zone_id in made:
        assert requests.delete(f"{base}/api/zones/{zone_id}", timeout=15).status_code == 200


def test_a_hostile_zone_name_round_trips_as_plain_text_in_json(fleet):
    base = fleet["base"]
    zone_id = post(base, circle(HOSTILE_NAME, 40.6, -73.9, 100)).json()["zone_id"]
    response = requests.get(f"{base}/api/zones/{zone_id}", timeout=5)
    assert response.content.isascii() and b"<" not in response.content and b"&amp;" not in response.content
    assert response.json()["name"] == HOSTILE_NAME
    assert requests.delete(f"{base}/api/zones/{zone_id}", timeout=15).status_code == 200


class AlertsClient:
    """A Socket.IO client keeping every ``zones`` and ``zone_alerts`` event."""

    def __init__(self, base: str) -> None:
        self.zones: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("zones", lambda payload: self._keep(self.zones, payload))
        self.sio.on("zone_alerts", lambda payload: self._keep(self.alerts, payload))
        self.sio.connect(base, wait_timeout=10)

    def _keep(self, into: list[dict[str, Any]], payload: dict[str, Any]) -> None:
        with self.lock:
            into.append(payload)

    def events_seen(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for payload in self.alerts for event in payload["events"]]


def write_events(bootstrap: str, topic: str, events: list[ZoneEvent], commit: bool) -> None:
    """Write events the way the zone processor does: in one transaction, committed or aborted."""
    kafka = KafkaProducer(bootstrap_servers=bootstrap.split(","), transactional_id=f"test-{uuid.uuid4().hex[:8]}")
    try:
        kafka.init_transactions()
        kafka.begin_transaction()
        for event in events:
            kafka.send(topic, key=event.driver_id.encode(), value=encode_event(event))
        kafka.flush()
        kafka.commit_transaction() if commit else kafka.abort_transaction()
    finally:
        kafka.close()


def test_committed_zone_events_reach_the_alerts_and_aborted_ones_never_do(fleet, kafka_admin):
    base = fleet["base"]
    zone_id = post(base, polygon("Depot", 40.68, -73.95)).json()["zone_id"]
    client = AlertsClient(base)
    try:
        wait_until(lambda: client.alerts and client.zones, 5, "a new client gets zone_alerts and zones")
        first = client.alerts[0]
        assert first["full"] is True and first["events"] == [] and first["v"] == 1
        assert any(z["zone_id"] == zone_id for z in client.zones[-1]["zones"])

        kafka_admin.create_topics([NewTopic(fleet["events"], 3, replication_factor=-1)], wait_for_metadata=True)
        now = time.time()
        ghost = ZoneEvent("drv-ghost", zone_id, "Depot", "enter", 40.68, -73.95, now - 2, 0, 1)
        write_events(fleet["bootstrap"], fleet["events"], [ghost], commit=False)
        events = [
            ZoneEvent("drv-x", zone_id, "Depot", "enter", 40.68, -73.95, now - 1, 0, 7),
            ZoneEvent("drv-x", zone_id, "Depot", "exit", 40.70, -73.95, now, 0, 9),
            ZoneEvent("drv-y", zone_id, "Depot", "dwell", 40.68, -73.951, now - 0.5, 1, 3),
        ]
        write_events(fleet["bootstrap"], fleet["events"], events, commit=True)
        wait_until(lambda: len(client.events_seen()) >= 3, 15, "the client gets the three committed events")
        latest = client.alerts[-1]
        assert latest["counters"][zone_id] == {"enter_1h": 1, "exit_1h": 1}
        held = requests.get(base + "/api/zone-alerts", params={"zone": zone_id}, timeout=5).json()
        expected = [("drv-x", "exit"), ("drv-y", "dwell"), ("drv-x", "enter")]
        assert [(e["driver_id"], e["event"]) for e in held["events"]] == expected
        assert requests.get(base + "/api/zone-alerts", params={"zone": "other"}, timeout=5).json()["events"] == []
        assert {e["driver_id"] for e in client.events_seen()} == {"drv-x", "drv-y"}, "the aborted one never shows"
        assert all(not payload["full"] for payload in client.alerts[1:])
        for payload in client.alerts[1:]:  # only the new ones each time, newest first
            assert [e["timestamp"] for e in payload["events"]] == sorted(
                (e["timestamp"] for e in payload["events"]), reverse=True
            )
    finally:
        client.sio.disconnect()

    again = AlertsClient(base)  # a page opened now gets the newest events whole, newest first
    try:
        wait_until(lambda: again.alerts, 5, "the new client's zone_alerts")
        whole = again.alerts[0]
        assert whole["full"] is True
        assert [e["event"] for e in whole["events"]] == ["exit", "dwell", "enter"]
    finally:
        again.sio.disconnect()
    assert requests.get(base + "/healthz", timeout=5).status_code == 200


def test_density_counts_available_drivers_and_waiting_riders_per_cell(fleet):
    base = fleet["base"]
    now = time.time()
    spot = (40.8, -73.95)
    send_fixes(
        fleet,
        [
            Fix("drv-dens-1", *spot, now, status="available"),
            Fix("drv-dens-2", *spot, now, status="available"),
            Fix("drv-dens-3", *spot, now, status="on_trip"),  # not supply
        ],
    )
    send_request(fleet["kafka"], fleet["requests"], RideRequest("req-dens", "rider-dens", *spot, now))
    cell = h3.latlng_to_cell(*spot, 9)

    def the_cell() -> dict[str, Any] | None:
        body = requests.get(base + "/api/density?resolution=9&boundary=1", timeout=5).json()
        return next((c for c in body["cells"] if c["cell"] == cell), None)

    found = wait_until(
        lambda: (c := the_cell()) and (c["available"], c["waiting"]) == (2, 1) and c,
        10,
        "the cell has both available drivers (not the one on a trip) and the waiting rider",
    )
    assert found["ratio"] == 2.0
    assert len(found["boundary"]) == 6
    body = requests.get(base + "/api/density", timeout=5).json()
    assert body["resolution"] == 8 and body["truncated"] is False and "boundary" not in body["cells"][0]
    bad = requests.get(base + "/api/density?resolution=12", timeout=5)
    assert bad.status_code == 400 and "7, 8 or 9" in bad.json()["error"]


# ---- the count of drivers inside (dashboard/zones.py's InsideCounter), pure: no broker


def test_the_counter_counts_the_drivers_inside_by_status_and_says_when_a_count_changed():
    table = ZoneTable()
    square = parse_zone(polygon("Square", 40.75, -73.98), "square")
    table.put(square)
    state = FleetState()
    now = time.time()
    state.apply_batch(
        [
            (Fix("in-1", 40.75, -73.98, now, status="available"), 0, 1),
            (Fix("in-2", 40.751, -73.981, now, status="on_trip"), 0, 2),
            (Fix("in-3", 40.749, -73.979, now), 0, 3),  # no status: other
            (Fix("out", 40.80, -73.98, now, status="available"), 0, 4),
        ],
        now,
    )
    counter = InsideCounter(table, state, lambda _s: None)
    counter.count()
    inside = counter.get("square")
    assert inside.counts_json() == {"available": 1, "on_trip": 1, "other": 1, "total": 3}
    assert sorted(inside.drivers) == ["in-1", "in-2", "in-3"]
    version = counter.version
    counter.count()
    assert counter.version == version, "nothing moved: the zones event need not go out again"
    state.apply(Fix("out", 40.75, -73.98, now + 1, status="available"), 0, 5, now + 1)
    counter.count()
    assert counter.version == version + 1 and counter.get("square").available == 2
    table.remove("square")
    counter.count()
    assert counter.get("square").total == 0 and counter.inside == {}


def test_a_dashboard_started_later_builds_the_same_zone_table_from_the_topic(fleet):
    base = fleet["base"]
    kept = post(base, circle("Kept", 40.66, -73.9, 200)).json()["zone_id"]
    gone = post(base, circle("Gone", 40.67, -73.9, 200)).json()["zone_id"]
    assert requests.delete(f"{base}/api/zones/{gone}", timeout=15).status_code == 200
    port = free_port()
    env = {"ZONES_TOPIC": fleet["zones"], "ZONE_EVENTS_TOPIC": fleet["events"], "TILE_URL": "none"}
    later = Process(f"{fleet['zones']}-later", dashboard_command(port, fleet["drivers"], fleet["bootstrap"]), env)
    later.start()
    try:
        other = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_status(other + "/healthz") == 200, 30, "the second dashboard is healthy")

        def same_zones() -> bool:
            listed = requests.get(other + "/api/zones", timeout=5).json()["zones"]
            mine = requests.get(base + "/api/zones", timeout=5).json()["zones"]
            return {z["zone_id"] for z in listed} == {z["zone_id"] for z in mine}

        wait_until(same_zones, 10, "the second dashboard holds the first one's zones")
        assert zone(other, kept)["name"] == "Kept" and zone(other, gone) is None
    finally:
        later.stop()
    assert "Traceback" not in later.log()
