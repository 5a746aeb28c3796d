"""The dashboard server, as a real process on a free port, against a real broker, seen by real clients.

Clients are python-socketio's ``socketio.Client``; they decode the binary frames with ``fleet.frames``
exactly as the map page does with a DataView.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import requests
import socketio
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fleet.frames import FleetView
from fleet.schema import Fix, encode_fix
from tests.conftest import ARTIFACTS, PYTHON, SHARED_REFERENCE, free_port


class Client:
    """A Socket.IO client that keeps the fleet the way the page does (a FleetView), thread-safely."""

    def __init__(self, base: str, auth: dict[str, str] | None = None) -> None:
        self.view = FleetView()
        self.stats: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("snapshot", self._locked(self.view.on_snapshot))
        self.sio.on("positions", self._locked(self.view.on_positions))
        self.sio.on("stats", self._locked(self.stats.append))
        self.sio.connect(base, auth=auth, wait_timeout=10)

    def _locked(self, handler: Callable[[Any], Any]) -> Callable[[Any], None]:
        def locked(payload: Any) -> None:
            with self.lock:
                handler(payload)

        return locked

    def drivers(self) -> dict[str, tuple[float, float, float]]:
        with self.lock:
            return {k: (r.latitude, r.longitude, r.timestamp) for k, r in self.view.by_driver_id().items()}

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture
def clients():
    opened: list[Client] = []

    def connect(base: str, auth: dict[str, str] | None = None) -> Client:
        client = Client(base, auth)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


@pytest.fixture
def dashboard(processes, request):
    """Start ``python -m dashboard`` on a free port; returns its base URL once it answers HTTP."""

    def start(bootstrap: str, topic: str, **env: str) -> str:
        port = free_port()
        ARTIFACTS.mkdir(exist_ok=True)
        log = open(ARTIFACTS / f"dashboard-{request.node.name[:60]}.log", "w")  # noqa: SIM115 - closed by the fixture
        request.addfinalizer(log.close)
        args = [PYTHON, "-m", "dashboard", "--port", str(port), "--topic", topic, "--bootstrap-servers", bootstrap]
        processes(args, env={"PYTHONUNBUFFERED": "1", **env}, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(base), 20, "the dashboard answers HTTP")
        return base

    return start


def _answers(base: str) -> bool:
    try:
        requests.get(base + "/healthz", timeout=1)
        return True
    except requests.ConnectionError:
        return False


def wait_until(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


def healthy(base: str) -> bool:
    return requests.get(base + "/healthz", timeout=2).status_code == 200


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=5, max_request_size=2 * 1024 * 1024)


def fleet_fixes(drivers: int, rounds: int, start: float) -> list[Fix]:
    """``rounds`` fixes per driver, each round a little later and further north-east."""
    return [
        Fix(f"drv-{i:05d}", 40.6 + i * 1e-4 + r * 1e-3, -74.0 + r * 1e-3, start + r, 90.0, 30.0, "available", r)
        for r in range(rounds)
        for i in range(drivers)
    ]


def send_fixes(kafka: KafkaProducer, topic: str, fixes: list[Fix]) -> None:
    for fix in fixes:
        kafka.send(topic, key=fix.driver_id.encode(), value=encode_fix(fix))
    kafka.flush()


def metric(base: str, name: str) -> float:
    for line in requests.get(base + "/metrics", timeout=2).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


def test_300_drivers_reach_the_client_at_their_latest_positions_and_the_api_agrees(
    kafka_bootstrap, make_topic, dashboard, clients
):
    topic = make_topic("fleet", partitions=6)
    base = dashboard(kafka_bootstrap, topic)
    client = clients(base)
    wait_until(lambda: client.view.snapshots, 5, "the client got its snapshot")
    fixes = fleet_fixes(300, 3, time.time() - 3)
    send_fixes(producer(kafka_bootstrap), topic, fixes)
    latest = {f.driver_id: (round(f.latitude, 6), round(f.longitude, 6), f.timestamp) for f in fixes[-300:]}

    def client_has_latest() -> bool:
        held = client.drivers()
        return len(held) == 300 and all(
            math.isclose(held[d][0], lat, abs_tol=1e-6) and math.isclose(held[d][1], lon, abs_tol=1e-6)
            for d, (lat, lon, _) in latest.items()
        )

    wait_until(client_has_latest, 5, "the client holds all 300 drivers at their latest positions")
    held = client.drivers()
    assert all(abs(held[d][2] - ts) < 0.001 for d, (_, _, ts) in latest.items()), "fix timestamps to the ms"

    listing = requests.get(base + "/api/drivers", timeout=5).json()
    assert listing["count"] == 300 and listing["next"] is None, "300 drivers fit in one page of 1,000"
    api = {d["driver_id"]: d for d in listing["drivers"]}
    assert set(api) == set(latest)
    for driver_id, (lat, lon, ts) in latest.items():
        assert (api[driver_id]["latitude"], api[driver_id]["longitude"], api[driver_id]["timestamp"]) == (lat, lon, ts)
        assert api[driver_id]["status"] == "available" and api[driver_id]["seq"] == 2
    one = requests.get(base + "/api/drivers/drv-00007", timeout=5).json()
    newest = latest["drv-00007"][2]
    assert [p[2] for p in one["trail"]] == pytest.approx([newest - 2, newest - 1, newest])
    assert 0 <= one["partition"] < 6 and one["offset"] >= 2
    missing = requests.get(base + "/api/drivers/nobody", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"error": "unknown driver", "driver_id": "nobody"}


def test_the_classic_tutorial_producer_appears_on_the_client(kafka_bootstrap, make_topic, dashboard, clients):
    topic = make_topic("classic")
    base = dashboard(kafka_bootstrap, topic)
    client = clients(base)
    classic = subprocess.run(
        [
            PYTHON,
            str(SHARED_REFERENCE / "classic_producer.py"),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--interval",
            "0.2",
            "--count",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert classic.returncode == 0, classic.stderr
    sent = [line for line in classic.stdout.splitlines() if line.startswith("Sent: ")]
    last = ast.literal_eval(sent[-1].removeprefix("Sent: "))  # the guide prints a Python dict
    wait_until(lambda: "101" in client.drivers(), 5, "driver 101 shows on the client")
    wait_until(lambda: client.drivers()["101"][0] == pytest.approx(last["latitude"], abs=1e-6), 5, "its last fix")
    assert requests.get(base + "/api/drivers/101", timeout=5).json()["status"] is None


HOSTILE = [
    (b"this is not json", "not_json"),
    (b"[40.7, -73.9]", "not_object"),
    (b'{"driver_id": "x", "latitude": 40.7}', "missing_field"),
    (b'{"driver_id": "x", "latitude": 200, "longitude": -73.9, "timestamp": 1}', "bad_latitude"),
    (b'{"driver_id": "x", "latitude": NaN, "longitude": -73.9, "timestamp": 1}', "bad_latitude"),
    (b'{"driver_id": "x", "pad": "' + b"x" * 1_000_000 + b'"}', "too_large"),
    (b'{"driver_id": "x", "latitude": 40.7, "longitude": -73.9, "timestamp": 4070908800}', "future_timestamp"),
]


def test_hostile_messages_are_counted_dead_lettered_intact_and_the_fixes_between_them_arrive(
    kafka_bootstrap, kafka_admin, make_topic, dashboard, clients
):
    topic = make_topic("hostile")
    base = dashboard(kafka_bootstrap, topic)
    client = clients(base)
    kafka = producer(kafka_bootstrap)
    now = time.time()
    for n, (value, _) in enumerate(HOSTILE):
        kafka.send(topic, key=b"hostile", value=value)
        good = Fix(f"between-{n}", 40.7, -73.9 + n * 0.01, now)
        kafka.send(topic, key=good.driver_id.encode(), value=encode_fix(good))
    kafka.flush()

    wait_until(lambda: len(client.drivers()) == len(HOSTILE), 10, "every valid fix between the hostile ones arrived")
    expected: dict[str, int] = {}
    for _, reason in HOSTILE:
        expected[reason] = expected.get(reason, 0) + 1
    wait_until(lambda: client.stats and client.stats[-1]["invalid"] == expected, 5, "stats count each reason")
    assert client.stats[-1]["invalid_total"] == len(HOSTILE)
    for reason, count in expected.items():
        assert metric(base, f'dashboard_invalid_messages_total{{reason="{reason}"}}') == count

    try:
        dead = read_all(kafka_bootstrap, topic + ".dlq", len(HOSTILE))
    finally:
        kafka_admin.delete_topics([topic + ".dlq"])  # the dashboard created it; make_topic deletes only its own
    assert sorted(value for value, _ in dead) == sorted(value for value, _ in HOSTILE), "bytes intact"
    assert sorted(reason for _, reason in dead) == sorted(reason for _, reason in HOSTILE)
    assert healthy(base)


def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, str]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), fetch_max_bytes=8 * 1024 * 1024)
    try:
        tp = TopicPartition(topic, 0)
        wait_until(lambda: topic in consumer.topics(), 10, f"{topic} exists")
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + 15
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return [(r.value, dict(r.headers)["dlq.reason"].decode()) for r in records]
    finally:
        consumer.close()


def test_with_dead_letters_off_refused_messages_are_only_counted(kafka_bootstrap, kafka_admin, make_topic, dashboard):
    topic = make_topic("nodlq")
    base = dashboard(kafka_bootstrap, topic, DASHBOARD_DEAD_LETTER="false")
    kafka = producer(kafka_bootstrap)
    kafka.send(topic, value=b"not json")
    kafka.flush()
    wait_until(lambda: metric(base, 'dashboard_invalid_messages_total{reason="not_json"}') == 1, 5, "it is counted")
    assert metric(base, "dashboard_dead_letters_total") == 0
    assert topic + ".dlq" not in kafka_admin.list_topics()


def test_socketio_accepts_the_page_origin_and_refuses_others(kafka_bootstrap, make_topic, dashboard):
    base = dashboard(kafka_bootstrap, make_topic("origin"))
    handshake = base + "/socket.io/?EIO=4&transport=polling"
    assert requests.get(handshake, headers={"Origin": base}, timeout=5).status_code == 200
    assert requests.get(handshake, headers={"Origin": "http://evil.example"}, timeout=5).status_code == 400


def test_a_markup_driver_id_is_held_and_served_as_plain_text(kafka_bootstrap, make_topic, dashboard, clients):
    topic = make_topic("markup")
    base = dashboard(kafka_bootstrap, topic)
    client = clients(base)
    markup = "<img src=x onerror=alert(1)>"
    send_fixes(producer(kafka_bootstrap), topic, [Fix(markup, 40.7, -73.9, time.time())])

    wait_until(lambda: markup in client.drivers(), 5, "the client holds the driver under its exact id")
    response = requests.get(base + "/api/drivers/" + urllib.parse.quote(markup, safe=""), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<img" not in response.text and "\\u003cimg" in response.text
    assert response.json()["driver_id"] == markup
    listing = requests.get(base + "/api/drivers", timeout=5)
    assert "<" not in listing.text and listing.json()["drivers"][0]["driver_id"] == markup
    assert metric(base, "dashboard_dead_letters_total") == 0


def test_a_reconnecting_client_gets_a_fresh_snapshot_and_resync_asks_for_one(
    kafka_bootstrap, make_topic, dashboard, clients
):
    topic = make_topic("reconnect")
    base = dashboard(kafka_bootstrap, topic)
    kafka = producer(kafka_bootstrap)
    send_fixes(kafka, topic, fleet_fixes(20, 1, time.time()))
    first = clients(base)
    wait_until(lambda: len(first.drivers()) == 20, 5, "the first client sees 20 drivers")
    first.close()

    send_fixes(kafka, topic, fleet_fixes(30, 1, time.time()))
    wait_until(lambda: requests.get(base + "/api/drivers", timeout=2).json()["count"] == 30, 5, "30 drivers held")
    again = clients(base)
    wait_until(lambda: again.view.snapshots == 1, 5, "the reconnected client got a snapshot")
    assert len(again.drivers()) == 30, "the snapshot alone holds the whole fleet"
    again.sio.emit("resync")
    wait_until(lambda: again.view.snapshots == 2, 5, "resync is answered with a snapshot")


def test_with_a_token_everything_but_health_and_metrics_needs_it(kafka_bootstrap, make_topic, dashboard, clients):
    topic = make_topic("token")
    base = dashboard(kafka_bootstrap, topic, DASHBOARD_TOKEN="s3cret-token")
    assert requests.get(base + "/", timeout=5).status_code == 401
    assert requests.get(base + "/api/drivers", timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.get(base + "/api/drivers", headers=wrong, timeout=5).status_code == 401
    right = {"Authorization": "Bearer s3cret-token"}
    assert requests.get(base + "/api/drivers", headers=right, timeout=5).status_code == 200
    assert requests.get(base + "/healthz", timeout=5).status_code in (200, 503)
    assert requests.get(base + "/metrics", timeout=5).status_code == 200

    once = requests.get(base + "/?token=s3cret-token", allow_redirects=False, timeout=5)
    assert once.status_code == 302 and once.headers["Location"] == "/"
    cookie = once.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    browser = requests.Session()
    assert browser.get(base + "/?token=s3cret-token", timeout=5).status_code == 200
    assert browser.get(base + "/api/drivers", timeout=5).status_code == 200, "the cookie is enough afterwards"

    with pytest.raises(socketio.exceptions.ConnectionError):
        clients(base, auth={"token": "wrong"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        clients(base)
    client = clients(base, auth={"token": "s3cret-token"})
    wait_until(lambda: client.view.snapshots, 5, "the client with the token gets its snapshot")


def test_health_follows_the_broker_and_the_fleet_survives_a_restart(private_broker, dashboard, clients):
    bootstrap, topic = private_broker.bootstrap, "driver-location"
    private_broker.stop()
    base = dashboard(bootstrap, topic)
    down = requests.get(base + "/healthz", timeout=5)
    assert down.status_code == 503 and "not reachable" in down.json()["reason"]
    assert requests.get(base + "/", timeout=5).status_code == 200, "the page is served without Kafka"

    private_broker.start()
    kafka = producer(bootstrap)
    send_fixes(kafka, topic, fleet_fixes(10, 1, time.time()))
    wait_until(lambda: healthy(base), 30, "healthy once the broker is up")
    client = clients(base)
    wait_until(lambda: len(client.drivers()) == 10, 10, "the first fixes reach the client")
    kafka.close()

    private_broker.stop()
    reason = wait_until(
        lambda: not healthy(base) and requests.get(base + "/healthz", timeout=5).json()["reason"], 15, "503 when down"
    )
    assert "does not answer" in reason or "not reachable" in reason
    assert len(client.drivers()) == 10 and client.sio.connected, "the map keeps what it showed"

    private_broker.start()
    wait_until(lambda: healthy(base), 30, "healthy again after the restart")
    kafka = producer(bootstrap)
    moved = fleet_fixes(12, 2, time.time())[12:]
    send_fixes(kafka, topic, moved)
    kafka.close()
    newest = {f.driver_id: f.latitude for f in moved}

    def updated() -> bool:
        held = client.drivers()
        return len(held) == 12 and all(held[d][0] == pytest.approx(lat, abs=1e-6) for d, lat in newest.items())

    wait_until(updated, 15, "the fleet keeps updating after the restart")


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--port", "http"], {}, "python -m dashboard: error: argument --port: 'http' is not an integer (see --help)"),
        (
            [],
            {"DASHBOARD_CORS_ORIGINS": "*"},
            "python -m dashboard: error: DASHBOARD_CORS_ORIGINS='*' is not valid: '*' would let any web site connect; "
            "list the origins instead",
        ),
    ],
)
def test_bad_flags_and_settings_are_one_line_and_exit_2(args, env, line):
    result = subprocess.run(
        [PYTHON, "-m", "dashboard", *args], capture_output=True, text=True, timeout=30, env={**os.environ, **env}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]


def test_a_client_that_stops_reading_skips_frames_then_gets_a_snapshot(kafka_bootstrap, make_topic, dashboard, clients):
    topic = make_topic("slow")
    base = dashboard(kafka_bootstrap, topic)
    fast = clients(base)
    # A raw Engine.IO long-polling client: between two polls, whatever the server sends waits in
    # the server's queue for this client, exactly as for a websocket client that stopped reading.
    slow = PollingClient(base)
    assert "snapshot" in slow.poll_until("snapshot")

    stop = threading.Event()
    feeder = threading.Thread(target=feed_fleet, args=(kafka_bootstrap, topic, stop), daemon=True)
    feeder.start()
    try:
        # Frames flow while the slow client does not poll: it skips them, which the server counts.
        wait_until(lambda: metric(base, "dashboard_frames_skipped_total") >= 20, 15, "20 frames skipped")
        backlog = slow.poll()
    finally:
        stop.set()
        feeder.join(10)
    assert 1 <= backlog.count("positions") <= 2, f"at most a frame or two were held for it, not 30: {backlog}"
    assert metric(base, "dashboard_frames_skipped_total") >= 20
    with fast.lock:
        assert fast.view.frames >= 20 and fast.view.seq_gaps == 0, "the slow client held up nobody"
        assert len(fast.stats) >= 2, "stats go out every second while frames flow"
    assert "snapshot" in slow.poll_until("snapshot"), "after skipping, the client gets a fresh snapshot"


def feed_fleet(bootstrap: str, topic: str, stop: threading.Event) -> None:
    """200 drivers moving every 100 ms."""
    kafka = producer(bootstrap)
    r = 0
    while not stop.is_set():
        send_fixes(kafka, topic, [Fix(f"d{i}", 40.0 + r * 1e-5, -73.0, time.time()) for i in range(200)])
        r += 1
        time.sleep(0.1)
    kafka.close()


class PollingClient:
    """Just enough Engine.IO 4 long-polling to connect to Socket.IO and name the events received."""

    def __init__(self, base: str) -> None:
        self.url = base + "/socket.io/?EIO=4&transport=polling"
        self.http = requests.Session()
        opened = self.http.get(self.url, timeout=10).text
        assert opened.startswith("0{")
        self.url += "&sid=" + json.loads(opened[1:])["sid"]
        assert self.http.post(self.url, data="40", timeout=10).text == "OK"

    def poll(self) -> list[str]:
        """The Socket.IO events in one poll's worth of packets, answering pings."""
        names = []
        response = self.http.get(self.url, timeout=30)
        assert response.status_code == 200, response.text[-300:]
        for packet in response.text.split("\x1e"):
            if packet == "2":
                self.http.post(self.url, data="3", timeout=10)
            elif packet.startswith("42"):
                names.append(json.loads(packet[2:])[0])
            elif packet.startswith("45"):
                names.append(json.loads(packet[2:].split("-", 1)[1])[0])
        return names

    def poll_until(self, event: str, timeout: float = 10) -> list[str]:
        names: list[str] = []
        deadline = time.monotonic() + timeout
        while event not in names and time.monotonic() < deadline:
            names += self.poll()
        return names
