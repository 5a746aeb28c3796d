"""Replay against a real broker and a real dashboard process, seen by python-socketio clients.

Every fix is produced with a fixed timestamp in the past (the fix's ``timestamp`` and the record's CreateTime
are the same), so what each replay must show is known exactly.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
import requests
import socketio
from kafka import KafkaProducer, TopicPartition

from fleet.frames import FleetView
from fleet.rides import MATCHED, NO_DRIVER, RideMatch, RideRequest, encode_match, encode_request, match_key
from fleet.schema import Fix, encode_fix
from tests.test_dashboard import dashboard, wait_until  # noqa: F401 - dashboard is a fixture

DRIVERS = 6
SECONDS = 120


class ReplayClient:
    """A Socket.IO client that asks for replays and keeps the fleet of the latest one, with each frame's arrival."""

    def __init__(self, base: str) -> None:
        self.view = FleetView()
        self.lock = threading.Lock()
        self.frames: list[tuple[float, dict[str, Any]]] = []  # (monotonic arrival, the event's replay field)
        self.first: dict[str, tuple[float, float, float]] | None = None  # the fleet of the first replay snapshot
        self.refusals: list[dict[str, Any]] = []
        self.riders: dict[str, Any] | None = None  # the latest riders event of the latest replay
        self.live_frames = 0
        self.replay_id = 0
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("snapshot", self._snapshot)
        self.sio.on("positions", self._positions)
        self.sio.on("replay_refused", self.refusals.append)
        self.sio.on("riders", self._riders)
        self.sio.connect(base, wait_timeout=10)

    def seek(self, t: float, speed: int = 1, playing: bool = True) -> None:
        with self.lock:
            self.replay_id += 1
            self.first = None
            self.frames = []
        self.sio.emit("replay", {"id": self.replay_id, "t": t, "speed": speed, "playing": playing})

    def live(self) -> None:
        with self.lock:
            self.replay_id += 1
        self.sio.emit("live")

    def _ours(self, payload: dict[str, Any]) -> bool:
        replay = payload.get("replay")
        if replay is None:
            self.live_frames += 1
        return replay is not None and replay["id"] == self.replay_id

    def _snapshot(self, payload: dict[str, Any]) -> None:
        with self.lock:
            if not self._ours(payload):
                return
            self.view.on_snapshot(payload)
            if self.first is None:
                self.first = self._drivers()
            self.frames.append((time.monotonic(), payload["replay"]))

    def _positions(self, payload: dict[str, Any]) -> None:
        with self.lock:
            if self._ours(payload) and self.first is not None:
                self.view.on_positions(payload)
                self.frames.append((time.monotonic(), payload["replay"]))

    def _riders(self, payload: dict[str, Any]) -> None:
        with self.lock:
            replay = payload.get("replay")
            if replay is not None and replay["id"] == self.replay_id:
                self.riders = payload

    def rides(self) -> dict[str, str]:
        """Request id to state, of the latest replayed riders event."""
        with self.lock:
            return {r["id"]: r["state"] for r in (self.riders or {}).get("riders", [])}

    def _drivers(self) -> dict[str, tuple[float, float, float]]:
        return {k: (r.latitude, r.longitude, r.timestamp) for k, r in self.view.by_driver_id().items()}

    def drivers(self) -> dict[str, tuple[float, float, float]]:
        with self.lock:
            return self._drivers()

    def close(self) -> None:
        self.sio.disconnect()


def served(client: ReplayClient, t: float) -> bool:
    """Ask ``client``'s replay of ``t`` once more unless it was served; whether it was, within a second."""
    if client.first is None:
        client.seek(t)
        time.sleep(1.0)
    return client.first is not None


def fix_at(i: int, r: int, base: float) -> Fix:
    """Driver ``i``'s fix of second ``r``: 0.1 s after driver ``i - 1``'s, further north-east each second."""
    return Fix(f"drv-{i}", 40.7 + i * 1e-3 + r * 1e-4, -74.0 + r * 1e-4, base + r + i * 0.1, 90.0, 30.0, "available", r)


def produce(bootstrap: str, topic: str, fixes: list[tuple[Fix, int | None]]) -> None:
    """Each fix with its timestamp as the record's CreateTime, to the given partition (None: by key)."""
    kafka = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=5)
    for fix, partition in fixes:
        key = fix.driver_id.encode()
        kafka.send(topic, key=key, value=encode_fix(fix), partition=partition, timestamp_ms=round(fix.timestamp * 1000))
    kafka.flush()
    kafka.close()


def history(base: float) -> list[tuple[Fix, int | None]]:
    return [(fix_at(i, r, base), None) for r in range(SECONDS) for i in range(DRIVERS)]


def expected_at(t: float, base: float, window_s: float = 30.0) -> dict[str, tuple[float, float, float]]:
    """Each driver's last fix at or before ``t`` within the stale window, as a frame carries it."""
    fleet = {}
    for i in range(DRIVERS):
        r = math.floor(t - base - i * 0.1)
        if 0 <= r < SECONDS and t - (base + r + i * 0.1) <= window_s:
            fix = fix_at(i, r, base)
            fleet[fix.driver_id] = (round(fix.latitude, 6), round(fix.longitude, 6), round(fix.timestamp, 3))
    return fleet


def serve(bootstrap: str, make_topic: Any, start: Any, stem: str, partitions: int, fixes: Any) -> tuple[str, float]:
    """A fresh topic holding ``fixes(base)``, base 15 minutes ago, and a dashboard on it (``start``, the
    fixture): (its URL, base)."""
    topic = make_topic(stem, partitions=partitions)
    base = math.floor(time.time()) - 900.0
    produce(bootstrap, topic, fixes(base))
    return start(bootstrap, topic, DASHBOARD_READBACK_S="0"), base


def rounded(fleet: dict[str, tuple[float, float, float]]) -> dict[str, tuple[float, float, float]]:
    return {k: (round(lat, 6), round(lon, 6), round(ts, 3)) for k, (lat, lon, ts) in fleet.items()}


def test_a_seek_to_the_middle_shows_the_fleet_as_it_was_then_and_4x_plays_four_times_faster(
    kafka_bootstrap,
    make_topic,
    dashboard,  # noqa: F811
):
    url, base = serve(kafka_bootstrap, make_topic, dashboard, "replay", 3, history)
    client = ReplayClient(url)
    try:
        t = base + 60.55
        client.seek(t, speed=1, playing=False)
        wait_until(lambda: client.first is not None, 10, "the first replay frame")
        assert rounded(client.first or {}) == expected_at(t, base), "the fleet exactly as it was at t"

        client.seek(t, speed=4, playing=True)
        wait_until(lambda: client.first is not None, 10, "the first frame of the 4x replay")
        time.sleep(3.0)
        with client.lock:
            frames = list(client.frames)
        (start_at, start), (end_at, end) = frames[0], frames[-1]
        rate = (end["t"] - start["t"]) / (end_at - start_at)
        assert 3.6 <= rate <= 4.4, f"{rate:.2f} replayed seconds per second at 4x"
        assert rounded(client.drivers()) == expected_at(end["t"], base), "positions follow the replayed time"
    finally:
        client.close()


def test_records_whose_timestamps_run_backwards_after_the_sought_offset_are_not_replayed(
    kafka_bootstrap,
    make_topic,
    dashboard,  # noqa: F811
):
    def fixes(base: float) -> list[tuple[Fix, int | None]]:
        # A producer whose clock is 90 s behind: its record lands at offset 100 with a timestamp of 10 s in.
        late = Fix("drv-late", 41.0, -73.0, base + 10, None, None, None, None)
        return (
            [(fix_at(0, r, base), 0) for r in range(100)]
            + [(late, 0)]
            + [(fix_at(0, r, base), 0) for r in range(100, SECONDS)]
        )

    url, base = serve(kafka_bootstrap, make_topic, dashboard, "backwards", 1, fixes)
    client = ReplayClient(url)
    try:
        for t in (base + 50.5, base + 105.5):  # the late record after the split, then inside the look-back range
            client.seek(t, speed=60, playing=True)
            wait_until(lambda: client.first is not None, 10, "the first replay frame")
            assert set(client.first or {}) == {"drv-0"}
            wait_until(lambda: client.frames[-1][1]["t"] >= base + SECONDS - 1, 10, "the replay reached the end")
            assert set(client.drivers()) == {"drv-0"}, "the record timestamped before the seek never shows"
    finally:
        client.close()


def test_partitions_empty_silent_in_the_window_or_only_later_are_handled(
    kafka_bootstrap,
    make_topic,
    dashboard,  # noqa: F811
):
    def fixes(base: float) -> list[tuple[Fix, int | None]]:  # partition 1: nothing at all
        around_t = [(fix_at(0, r, base), 0) for r in range(200, 320)]
        long_before = [(fix_at(2, r, base), 2) for r in range(0, 100)]  # out of the stale window
        only_after = [(fix_at(3, r, base), 3) for r in range(310, 320)]
        return around_t + long_before + only_after

    url, base = serve(kafka_bootstrap, make_topic, dashboard, "sparse", 4, fixes)
    t = base + 300.5
    client = ReplayClient(url)
    try:
        client.seek(t, speed=16, playing=True)
        wait_until(lambda: client.first is not None, 10, "the first replay frame")
        assert set(client.first or {}) == {"drv-0"}
        wait_until(lambda: "drv-3" in client.drivers(), 10, "the partition that only starts later plays")
    finally:
        client.close()


def test_the_fifth_replay_is_refused_with_the_reason_and_a_freed_slot_serves_it(
    kafka_bootstrap,
    make_topic,
    dashboard,  # noqa: F811
):
    url, base = serve(kafka_bootstrap, make_topic, dashboard, "cap", 2, history)
    replaying = [ReplayClient(url) for _ in range(5)]
    try:
        for client in replaying[:4]:
            client.seek(base + 60, speed=1)
        for client in replaying[:4]:
            wait_until(lambda client=client: client.first is not None, 10, "each of four replays starts")
        fifth = replaying[4]
        fifth.seek(base + 60)
        wait_until(lambda: fifth.refusals, 5, "the fifth replay is refused")
        assert "DASHBOARD_MAX_REPLAYS" in fifth.refusals[0]["reason"] and fifth.refusals[0]["id"] == fifth.replay_id
        assert fifth.first is None

        live_before = replaying[0].live_frames
        replaying[0].live()  # going live frees the slot at once: the live snapshot it gets next says it was freed
        wait_until(lambda: replaying[0].live_frames > live_before, 10, "the first replayer is live again")
        fifth.seek(base + 60)
        wait_until(lambda: fifth.first is not None, 10, "the freed slot serves the fifth")
        replaying[1].close()  # so does leaving (the server learns it on its own time: ask until served)
        sixth = ReplayClient(url)
        replaying.append(sixth)
        wait_until(lambda: served(sixth, base + 30), 10, "the slot of a browser that left serves another")
        timeline = requests.get(url + "/api/replay/timeline", timeout=10).json()
        assert timeline["start"] == base and sum(timeline["counts"]) == DRIVERS * SECONDS
    finally:
        for client in replaying:
            client.close()


def test_a_topic_whose_oldest_records_retention_deleted_replays_from_what_it_still_holds(
    kafka_bootstrap,
    kafka_admin,
    make_topic,
    dashboard,  # noqa: F811
):
    topic = make_topic("retained", partitions=1)
    base = math.floor(time.time()) - 900.0
    produce(kafka_bootstrap, topic, history(base))
    # What retention does: the log's start moves past the first minute (6 fixes a second).
    kafka_admin.delete_records({TopicPartition(topic, 0): 60 * DRIVERS}, timeout_ms=10_000)
    url = dashboard(kafka_bootstrap, topic, DASHBOARD_READBACK_S="0")

    timeline = requests.get(url + "/api/replay/timeline", timeout=10).json()
    assert timeline["start"] == pytest.approx(base + 60, abs=0.5), "the time bar starts at the oldest record left"
    assert sum(timeline["counts"]) == (SECONDS - 60) * DRIVERS

    client = ReplayClient(url)
    try:
        client.seek(base + 30.0, speed=16, playing=True)  # a moment whose records are gone
        wait_until(lambda: client.first is not None, 10, "the first replay frame")
        assert client.first == {}, "nothing at or before a deleted moment is shown"
        wait_until(lambda: len(client.drivers()) == DRIVERS, 15, "the oldest records left play")
        assert all(ts >= base + 60 for _, _, ts in client.drivers().values())
    finally:
        client.close()


def test_riders_replay_as_they_stood_at_the_sought_time_and_play_on(kafka_bootstrap, make_topic, dashboard):  # noqa: F811
    requests_topic, matches_topic = make_topic("requests", partitions=2), make_topic("matches", partitions=2)
    topic = make_topic("drivers", partitions=2)
    base = math.floor(time.time()) - 900.0
    produce(kafka_bootstrap, topic, history(base))
    point = (40.75, -73.99)

    def request(rid: str, at: float) -> tuple[bytes, bytes, float]:
        return b"cell", encode_request(RideRequest(rid, "rider-" + rid, *point, base + at)), base + at

    def answer(rid: str, requested: float, at: float, driver: str | None) -> tuple[bytes, bytes, float]:
        outcome = MATCHED if driver else NO_DRIVER
        extra = {
            "driver_id": driver,
            "distance_m": 800.0,
            "eta_s": 120,
            "driver_latitude": 40.7,
            "driver_longitude": -74.0,
        }
        extra = extra if driver else {}
        match = RideMatch(rid, "rider-" + rid, outcome, base + at, base + requested, *point, **extra)
        return match_key(rid), encode_match(match), base + at

    requested = [request(rid, at) for rid, at in (("matched", 40), ("none", 45), ("waiting", 55), ("later", 62))]
    kafka = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    for key, value, at in requested:
        kafka.send(requests_topic, key=key, value=value, timestamp_ms=round(at * 1000))
    kafka.flush()
    kafka.close()
    answers = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), transactional_id=f"test-{topic}")
    answers.init_transactions()
    for committed, (key, value, at) in (
        (True, answer("matched", 40, 50, "drv-1")),
        (True, answer("none", 45, 48, None)),
        (False, answer("waiting", 55, 57, "drv-2")),  # an aborted answer: the rider still waits
    ):
        answers.begin_transaction()
        answers.send(matches_topic, key=key, value=value, timestamp_ms=round(at * 1000))
        if committed:
            answers.commit_transaction()
        else:
            answers.abort_transaction()
    answers.close()

    url = dashboard(
        kafka_bootstrap,
        topic,
        DASHBOARD_READBACK_S="0",
        RIDE_REQUEST_TOPIC=requests_topic,
        RIDE_MATCH_TOPIC=matches_topic,
    )
    client = ReplayClient(url)
    try:
        client.seek(base + 60.5, speed=1, playing=True)
        wait_until(lambda: client.riders is not None, 10, "the replay's first riders event")
        assert client.rides() == {"matched": "en_route", "none": "no_driver", "waiting": "waiting"}
        counts = (client.riders or {})["counts"]
        assert (counts["waiting"], counts["en_route"], counts["matched_60s"], counts["no_driver_60s"]) == (1, 1, 1, 1)
        wait_until(lambda: "later" in client.rides(), 5, "the request of 1.5 s after the sought time")
        assert client.rides()["later"] == "waiting"
    finally:
        client.close()
