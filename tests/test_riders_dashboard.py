"""Riders through the dashboard: ride topics in Kafka (a real broker) to the ``riders`` Socket.IO event."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import requests
import socketio
from kafka import KafkaProducer
from kafka.admin import NewTopic

from fleet.rides import MATCHED, NO_DRIVER, RideMatch, RideRequest, encode_match, encode_request, match_key, request_key
from fleet.schema import Fix
from tests import test_dashboard
from tests.conftest import ARTIFACTS
from tests.test_dashboard import metric, producer, read_all, send_fixes, wait_until

LAT, LON = 40.75, -73.98
start_dashboard = test_dashboard.dashboard  # the fixture of tests/test_dashboard.py, under a name of its own here


class RidersClient:
    """A Socket.IO client that keeps every ``riders`` event it receives."""

    def __init__(self, base: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("riders", self._on_riders)
        self.sio.connect(base, wait_timeout=10)

    def _on_riders(self, payload: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(payload)

    def latest(self) -> dict[str, Any] | None:
        with self.lock:
            return self.events[-1] if self.events else None

    def ride(self, request_id: str) -> dict[str, Any] | None:
        latest = self.latest()
        return next((r for r in latest["riders"] if r["id"] == request_id), None) if latest else None

    def drivers_ever_shown(self, request_id: str) -> set[str | None]:
        with self.lock:
            return {r["driver_id"] for e in self.events for r in e["riders"] if r["id"] == request_id}


def ride_request(n: int, at: float, lat: float = LAT, lon: float = LON) -> RideRequest:
    return RideRequest(f"req-{n}", f"rider-{n}", lat, lon, at)


def send_requests(kafka: KafkaProducer, topic: str, rides: list[RideRequest]) -> None:
    for ride in rides:
        kafka.send(topic, key=request_key(ride.latitude, ride.longitude), value=encode_request(ride))
    kafka.flush()


def answer(ride: RideRequest, at: float, driver_id: str | None = None) -> RideMatch:
    if driver_id is None:
        return RideMatch(ride.request_id, ride.rider_id, NO_DRIVER, at, ride.timestamp, ride.latitude, ride.longitude)
    return RideMatch(
        ride.request_id,
        ride.rider_id,
        MATCHED,
        at,
        ride.timestamp,
        ride.latitude,
        ride.longitude,
        driver_id,
        440.0,
        64,
        ride.latitude + 0.004,
        ride.longitude,
    )


def in_transaction(bootstrap: str, topic: str, answers: list[RideMatch], commit: bool) -> None:
    """Write answers the way the matcher does: in one Kafka transaction, committed or aborted."""
    kafka = KafkaProducer(bootstrap_servers=bootstrap.split(","), transactional_id=f"test-{uuid.uuid4().hex[:8]}")
    try:
        kafka.init_transactions()
        kafka.begin_transaction()
        for match in answers:
            kafka.send(topic, key=match_key(match.request_id), value=encode_match(match))
        kafka.flush()
        if commit:
            kafka.commit_transaction()
        else:
            kafka.abort_transaction()
    finally:
        kafka.close()


def test_riders_reach_the_browser_waiting_then_matched_then_picked_up_and_aborted_answers_never_do(
    kafka_bootstrap, make_topic, start_dashboard
):
    drivers, requests_topic, matches_topic = make_topic("fleet"), make_topic("requests", 2), make_topic("matches", 2)
    base = start_dashboard(kafka_bootstrap, drivers, RIDE_REQUEST_TOPIC=requests_topic, RIDE_MATCH_TOPIC=matches_topic)
    client = RidersClient(base)
    kafka = producer(kafka_bootstrap)
    now = time.time()
    send_fixes(kafka, drivers, [Fix("drv-a", LAT + 0.004, LON, now, status="available")])
    rides = [ride_request(n, now - 3 + n) for n in range(3)]
    send_requests(kafka, requests_topic, rides)
    wait_until(
        lambda: client.latest() and client.latest()["counts"]["waiting"] == 3, 10, "the client sees 3 waiting riders"
    )
    assert {r["state"] for r in client.latest()["riders"]} == {"waiting"}

    in_transaction(kafka_bootstrap, matches_topic, [answer(rides[0], now, "drv-ghost")], commit=False)
    in_transaction(
        kafka_bootstrap, matches_topic, [answer(rides[0], now + 0.5, "drv-a"), answer(rides[1], now + 1)], True
    )

    def answered() -> bool:
        first = client.ride("req-0")
        return bool(first and first["state"] == "en_route" and client.latest()["counts"]["no_driver_60s"] == 1)

    wait_until(answered, 10, "the committed answers reach the client")
    latest = client.latest()
    assert client.ride("req-0")["driver_id"] == "drv-a"
    assert (client.ride("req-1")["state"], client.ride("req-2")["state"]) == ("no_driver", "waiting")
    counts = latest["counts"]
    assert (counts["waiting"], counts["en_route"], counts["matched_60s"], counts["no_driver_60s"]) == (1, 1, 1, 1)
    assert counts["median_match_s"] == round(now + 0.5 - rides[0].timestamp, 3)
    assert latest["kafka"]["missing"] == [] and latest["v"] == 1

    send_fixes(kafka, drivers, [Fix("drv-a", LAT + 0.0002, LON, time.time(), status="on_trip")])  # 22 m away
    wait_until(lambda: client.ride("req-0")["state"] == "picked_up", 5, "the rider is picked up")
    listing = requests.get(base + "/api/riders", timeout=5).json()
    assert {r["id"]: r["state"] for r in listing["riders"]} == {
        "req-0": "picked_up",
        "req-1": "no_driver",
        "req-2": "waiting",
    }
    assert client.drivers_ever_shown("req-0") == {None, "drv-a"}, "the aborted transaction's driver never showed"
    assert metric(base, 'dashboard_riders{state="waiting"}') == 1
    client.sio.disconnect()


BAD_ANSWER = b'{"request_id": "req-x", "rider_id": "r", "outcome": "teleported"}'


def test_a_malformed_ride_message_is_counted_and_a_bad_answer_dead_lettered(
    kafka_bootstrap, kafka_admin, make_topic, start_dashboard
):
    drivers, requests_topic, matches_topic = make_topic("fleet"), make_topic("requests"), make_topic("matches")
    base = start_dashboard(kafka_bootstrap, drivers, RIDE_REQUEST_TOPIC=requests_topic, RIDE_MATCH_TOPIC=matches_topic)
    client = RidersClient(base)
    kafka = producer(kafka_bootstrap)
    kafka.send(requests_topic, key=b"nyc", value=b"not json at all")
    kafka.send(matches_topic, key=b"req-x", value=BAD_ANSWER)
    send_requests(kafka, requests_topic, [ride_request(7, time.time())])

    expected = {requests_topic: {"not_json": 1}, matches_topic: {"missing_field": 1}}
    wait_until(lambda: client.latest() and client.latest()["invalid"] == expected, 10, "both refusals are counted")
    assert client.latest()["invalid_total"] == 2
    assert client.ride("req-7")["state"] == "waiting", "the request after the bad one arrives"
    assert metric(base, f'dashboard_invalid_ride_messages_total{{reason="not_json",topic="{requests_topic}"}}') == 1
    try:
        dead = read_all(kafka_bootstrap, matches_topic + ".dlq", 1)
    finally:
        kafka_admin.delete_topics([matches_topic + ".dlq"])  # the dashboard created it
    assert dead == [(BAD_ANSWER, "missing_field")]
    assert requests_topic + ".dlq" not in kafka_admin.list_topics(), "refused requests are the matcher's to copy"
    client.sio.disconnect()


def test_without_ride_topics_the_dashboard_works_quietly_and_reads_them_once_they_exist(
    kafka_bootstrap, kafka_admin, make_topic, start_dashboard, request
):
    drivers = make_topic("fleet")
    late = f"test-late-requests-{uuid.uuid4().hex[:8]}"
    base = start_dashboard(kafka_bootstrap, drivers, RIDE_REQUEST_TOPIC=late, RIDE_MATCH_TOPIC=late + "-matches")
    client = RidersClient(base)
    wait_until(
        lambda: client.latest() and client.latest()["kafka"]["missing"] == [late, late + "-matches"],
        10,
        "a riders event says both ride topics are missing",
    )
    assert requests.get(base + "/healthz", timeout=5).status_code == 200
    time.sleep(6)  # more than one look for the topics
    assert late not in kafka_admin.list_topics(), "looking for a topic does not create it"

    kafka_admin.create_topics([NewTopic(late, num_partitions=2, replication_factor=-1)], wait_for_metadata=True)
    kafka = producer(kafka_bootstrap)
    try:
        send_requests(kafka, late, [ride_request(1, time.time())])
        wait_until(lambda: client.ride("req-1"), 15, "the request of the topic created later shows")
    finally:
        kafka.close()
        kafka_admin.delete_topics([late])
    assert client.latest()["kafka"]["missing"] == [late + "-matches"]
    time.sleep(2)  # the consumer's fetches and metadata requests go on for the deleted topic
    assert late not in kafka_admin.list_topics(), "a deleted ride topic is not created again by the dashboard"
    log = (ARTIFACTS / f"dashboard-{request.node.name[:60]}.log").read_text()
    assert log.count("to exist (the matcher creates them)") == 2, "one line when both are missing, one when one is"
    client.sio.disconnect()


def test_with_a_token_riders_need_it_too(kafka_bootstrap, make_topic, start_dashboard):
    base = start_dashboard(kafka_bootstrap, make_topic("fleet"), DASHBOARD_TOKEN="r1ders-token")
    assert requests.get(base + "/api/riders", timeout=5).status_code == 401
    right = {"Authorization": "Bearer r1ders-token"}
    assert requests.get(base + "/api/riders", headers=right, timeout=5).json()["counts"]["waiting"] == 0
    with pytest.raises(socketio.exceptions.ConnectionError):
        RidersClient(base)
