"""`python -m zones` against a real broker: zone events exactly once, through kills and a rebalance.

The expected events are what the pure tracker says for the same fixes in the same partitions; the
processor's committed ``zone-events`` (read_committed) must hold each of them exactly once.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter

import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from bench.common import PYTHON
from bus.clients import ensure_topics
from bus.deadletter import HEADER_REASON
from fleet import decode
from fleet.decode import Refusal
from fleet.geo import destination
from fleet.schema import Fix, encode_fix
from fleet.zone_tracker import ZoneTracker
from fleet.zones import ZoneTable, encode_zone, parse_zone
from tests.stack import TopicReader, dead_letter_origins
from tests.test_matcher_service import Logs

CENTER = (48.8566, 2.3522)


def zone_features() -> dict[str, dict]:
    lat, lon = CENTER
    d = 0.002
    square = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    return {
        "square": {
            "type": "Feature",
            "properties": {"name": "Square", "dwell_s": 20},
            "geometry": {"type": "Polygon", "coordinates": [square]},
        },
        "ring": {
            "type": "Feature",
            "properties": {"name": "Ring", "radius_m": 150},
            "geometry": {"type": "Point", "coordinates": [lon + 0.004, lat]},
        },
    }


def make_names(stem: str) -> dict:
    base = f"test-zones-{stem}-{uuid.uuid4().hex[:8]}"
    return {
        "drivers": base,
        "zones": base + "-zones",
        "events": base + "-events",
        "state": base + "-state",
        "group": base + "-group",
    }


def start(processes, bootstrap: str, topics: dict[str, str], instance: str, **env: str):
    process = processes(
        [
            PYTHON,
            "-m",
            "zones",
            "--bootstrap-servers",
            bootstrap,
            "--driver-topic",
            topics["drivers"],
            "--zones-topic",
            topics["zones"],
            "--events-topic",
            topics["events"],
            "--state-topic",
            topics["state"],
            "--group-id",
            topics["group"],
            "--instance-id",
            instance,
            "--partitions",
            "4",
            "--log-interval-s",
            "1",
        ],
        env={"PYTHONUNBUFFERED": "1", **env},
    )
    topics["started"].append(process)
    return process, Logs(process)


@pytest.fixture
def topics(kafka_admin, processes, request):
    """Topic names of this test; afterwards its processors are stopped first (a running one would create its
    topics again), then every topic made is deleted."""
    names = make_names(request.node.name.split("_")[-1])
    names["started"] = []
    yield names
    for process in names["started"]:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
    existing = set(kafka_admin.list_topics())
    made = [names[k] for k in ("drivers", "zones", "events", "state") if names[k] in existing]
    made += [names[k] + ".dlq" for k in ("drivers", "zones") if names[k] + ".dlq" in existing]
    if made:
        kafka_admin.delete_topics(made)


def path(driver: int, t0: float) -> list[Fix]:
    """West to east through the square (lingering 30 s inside it) and the circle, 10 m and 1 s a fix."""
    start = destination(CENTER[0] + (driver % 7 - 3) * 0.0002, CENTER[1], 270.0, 400.0)
    fixes = []
    t = t0
    for step in range(0, 1300, 10):
        lat, lon = destination(*start, 90.0, step)
        for _ in range(30 if step == 400 else 1):
            t += 1.0
            fixes.append(Fix(f"drv-{driver}", lat, lon, t))
    return fixes


def expected_events(table: ZoneTable, sent: list[tuple[Fix, int, int]]) -> Counter:
    trackers: dict[int, ZoneTracker] = {}
    events: Counter = Counter()
    for fix, partition, offset in sorted(sent, key=lambda s: (s[1], s[2])):
        tracker = trackers.setdefault(partition, ZoneTracker())
        for e in tracker.observe(
            fix.driver_id,
            fix.latitude,
            fix.longitude,
            fix.timestamp,
            partition,
            offset,
            table.containing(fix.latitude, fix.longitude),
            table,
        ):
            events[(e.driver_id, e.zone_id, e.event, e.partition, e.offset)] += 1
    return events


def committed_events(records: list) -> Counter:
    found: Counter = Counter()
    for record in records:
        event = decode.ZONE_EVENTS(record.key, record.value, time.time())
        assert not isinstance(event, Refusal), event
        found[(event.driver_id, event.zone_id, event.event, event.partition, event.offset)] += 1
    return found


def test_every_event_is_committed_exactly_once_through_a_kill_and_a_rebalance(
    kafka_bootstrap, kafka_admin, processes, topics
):
    kafka = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), linger_ms=5, acks="all")
    table = ZoneTable()
    ensure_topics(kafka_admin, {topics["zones"]: 1}, {"cleanup.policy": "compact"})
    try:
        for zone_id, feature in zone_features().items():
            zone = parse_zone(feature, zone_id)
            table.put(zone)
            kafka.send(topics["zones"], key=zone_id.encode(), value=encode_zone(zone))
        kafka.flush()
        a, a_logs = start(processes, kafka_bootstrap, topics, "a")
        a_logs.wait_for(r"processing partitions \[0, 1, 2, 3\]", timeout=30)
        t0 = time.time() - 3600
        paths = [path(n, t0) for n in range(24)]
        steps = max(len(p) for p in paths)
        futures = []
        b = b_logs = None
        for i in range(steps):
            for p in paths:
                if i < len(p):
                    futures.append(
                        (p[i], kafka.send(topics["drivers"], key=p[i].driver_id.encode(), value=encode_fix(p[i])))
                    )
            if i == steps // 4:
                b, b_logs = start(processes, kafka_bootstrap, topics, "b")
            if i == steps // 2:
                b_logs.wait_for(r"processing partitions \[\d", timeout=30)
                a.send_signal(signal.SIGKILL)  # mid-stream, with a transaction open
                a.wait()
            if i == steps * 5 // 8:
                a, a_logs = start(processes, kafka_bootstrap, topics, "a")
            time.sleep(0.02)  # ~1,200 fixes/s: the processors are busy when one is killed
        sent = [(fix, f.get(timeout=30).partition, f.get(timeout=30).offset) for fix, f in futures]
        expected = expected_events(table, sent)
        assert sum(e[2] == "enter" for e in expected) == 48 and sum(e[2] == "dwell" for e in expected) == 24
        reader = TopicReader(kafka_bootstrap, topics["events"])
        records = reader.read(lambda r: len(r) >= sum(expected.values()), 45, "every expected event is committed")
        time.sleep(1.0)  # and nothing more comes
        records = reader.read_to_end()
        reader.close()
        assert committed_events(records) == expected
        journeys: dict[str, list[tuple[str, str]]] = {}
        for driver_id, zone_id, event, _, _ in expected:
            journeys.setdefault(driver_id, []).append((event, zone_id))
        crossing = [("enter", "square"), ("dwell", "square"), ("exit", "square"), ("enter", "ring"), ("exit", "ring")]
        assert all(sorted(j, key=crossing.index) == crossing for j in journeys.values()) and len(journeys) == 24
        restored = a_logs.wait_for(r"restored in .*: (\d+) drivers inside zones", timeout=1)
        assert int(restored.group(1)) > 0, "the restarted processor took its drivers' zones from the changelog"
        b_logs.wait_for(r"assigned partitions \[\d, \d\]", timeout=1)
    finally:
        kafka.close()


def test_invalid_zones_and_poison_fixes_are_dead_lettered_and_a_deleted_zone_lets_its_drivers_out(
    kafka_bootstrap, kafka_admin, processes, topics
):
    kafka = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), linger_ms=5, acks="all")
    try:
        # Refused fixes are the dashboard's to copy unless the processor is asked to: here it is.
        process, logs = start(processes, kafka_bootstrap, topics, "solo", ZONES_DEAD_LETTER="true")
        logs.wait_for(r"processing partitions \[0, 1, 2, 3\]", timeout=30)
        bow_tie = {
            "type": "Feature",
            "properties": {"name": "Bow tie"},
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        }
        kafka.send(topics["zones"], key=b"bad", value=json.dumps(bow_tie).encode())
        ring = parse_zone(zone_features()["ring"], "ring")
        kafka.send(topics["zones"], key=b"ring", value=encode_zone(ring))
        kafka.flush()
        time.sleep(1.0)
        now = time.time()
        poison = kafka.send(topics["drivers"], key=b"x", value=b'{"driver_id": "x", "latitude": 1e999').get(10)
        for n in range(3):
            fix = Fix(f"in-{n}", *ring.origin, now - 10 + n)
            kafka.send(topics["drivers"], key=fix.driver_id.encode(), value=encode_fix(fix))
        kafka.flush()
        events = TopicReader(kafka_bootstrap, topics["events"])
        events.read(lambda r: len(r) >= 3, 20, "three drivers entered")
        kafka.send(topics["zones"], key=b"ring", value=None).get(10)
        records = events.read(lambda r: len(r) >= 6, 20, "the deleted zone let its three drivers out")
        assert sorted((r.key, json.loads(r.value)["event"]) for r in records) == sorted(
            (f"in-{n}".encode(), event) for n in range(3) for event in ("enter", "exit")
        )
        events.close()
        fix_letters = TopicReader(kafka_bootstrap, topics["drivers"] + ".dlq")
        letters = fix_letters.read(lambda r: len(r) >= 1, 20, "the poison fix is dead-lettered")
        assert dead_letter_origins(letters) == [(topics["drivers"], poison.partition, poison.offset, "not_json")]
        fix_letters.close()
        zone_letters = TopicReader(kafka_bootstrap, topics["zones"] + ".dlq")
        letters = zone_letters.read(lambda r: len(r) >= 1, 20, "the invalid zone is dead-lettered")
        assert [(r.key, dict(r.headers)[HEADER_REASON]) for r in letters] == [(b"bad", b"bad_geometry")]
        zone_letters.close()
        assert process.poll() is None, "refused records never stop the processor"
        for topic in (topics["zones"], topics["state"]):
            assert _cleanup_policy(kafka_admin, topic) == "compact"
    finally:
        kafka.close()


def _cleanup_policy(admin, topic: str) -> str:
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return configs["topic"][topic]["cleanup.policy"]["value"]
