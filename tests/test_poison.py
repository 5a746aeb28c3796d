"""No record can stop the map or the matcher: the regressions of issue 10, a live fuzz, dead letters that fail.

Everything here runs the real processes (`python -m dashboard`, `python -m matcher`) against the real
broker and feeds them records a hostile or careless producer could write (``bench/hostile.py``). Each of
the five observations that opened the issue has a test of its own, named after what it proves.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import requests
import socketio
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from bench.hostile import (
    FIX_CLASSES,
    MATCH_CLASSES,
    REQUEST_CLASSES,
    Hostile,
    hostile_fixes,
    hostile_matches,
    hostile_requests,
    odd_but_valid_requests,
)
from bus.deadletter import HEADER_EXCEPTION, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from fleet import decode
from fleet.decode import Refusal
from fleet.rides import RideRequest, encode_request, request_key
from fleet.schema import Fix, encode_fix
from tests.stack import (
    HealthWatch,
    Process,
    TopicReader,
    Topics,
    all_drivers,
    answers_of,
    assert_no_traceback,
    committed_to_the_end,
    dead_letter_origins,
    driver,
    http_status,
    producer,
    send,
    send_fix,
    send_request,
    start_dashboard,
    start_matcher,
)
from tests.test_dashboard import wait_until

NYC = (40.758, -73.9855)


# ---- a dashboard and a matcher shared by the regression tests of this module


@dataclass
class Stack:
    bootstrap: str
    topics: Topics
    dashboard: Process
    base: str
    matcher: Process
    kafka: KafkaProducer


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, kafka_admin: KafkaAdminClient) -> Iterator[Stack]:
    topics = Topics.create(kafka_admin, "poison-stack")
    dashboard, base = start_dashboard(kafka_bootstrap, topics, "stack")
    matcher = start_matcher(kafka_bootstrap, topics, "stack")
    kafka = producer(kafka_bootstrap)
    try:
        yield Stack(kafka_bootstrap, topics, dashboard, base, matcher, kafka)
    finally:
        kafka.close()
        dashboard.stop()
        matcher.stop()
        topics.delete(kafka_admin)


def test_every_hostile_class_is_refused_by_its_decoder_for_the_reason_the_fuzz_expects():
    rng = random.Random(7)
    now = time.time()
    for classes, decoder in (
        (FIX_CLASSES, decode.FIXES),
        (REQUEST_CLASSES, decode.REQUESTS),
        (MATCH_CLASSES, decode.MATCHES),
    ):
        for kind, make in classes.items():
            hostile = make(rng, now)
            result = decoder(hostile.key, hostile.value, now)
            assert isinstance(result, Refusal) and result.reason == hostile.reason, (decoder, kind, result)


def test_a_fix_with_a_400_digit_latitude_or_nested_10000_deep_no_longer_stops_the_map_or_the_matcher(stack):
    kafka, topics = stack.kafka, stack.topics
    huge = b'{"driver_id":"x","latitude":1' + b"0" * 399 + b',"longitude":0,"timestamp":%d}' % int(time.time())
    nested = b"[" * 5000 + b"]" * 5000  # 10 KB, under the size limit
    send(kafka, topics.drivers, b"x", huge)
    send(kafka, topics.drivers, None, nested)
    now = time.time()
    for i in range(10_000):
        fix = Fix(f"obs1-{i:05d}", 40.70 + (i % 100) * 0.002, -74.0 + (i // 100) * 0.002, now, status="available")
        kafka.send(topics.drivers, key=fix.driver_id.encode(), value=encode_fix(fix))
    kafka.flush()

    wait_until(lambda: sum(d.startswith("obs1-") for d in all_drivers(stack.base)) == 10_000, 30, "all 10,000 drivers")
    assert http_status(stack.base + "/healthz") == 200
    # The matcher read both records too, and still offers drivers.
    request = RideRequest(f"obs1-{uuid.uuid4().hex}", "rider-obs1", 40.7001, -73.9999, time.time())
    send_request(kafka, topics.requests, request)
    reader = TopicReader(stack.bootstrap, topics.matches)
    try:
        reader.read(lambda r: any(m.request_id == request.request_id for m in answers_of(r)), 20, "the answer")
    finally:
        reader.close()
    answer = next(m for m in answers_of(reader.records) if m.request_id == request.request_id)
    assert answer.outcome == "matched" and answer.driver_id.startswith("obs1-")
    assert stack.dashboard.popen.poll() is None and stack.matcher.popen.poll() is None
    assert_no_traceback(stack.dashboard, stack.matcher)


def test_a_request_with_a_400_digit_number_or_at_the_pole_no_longer_stops_matching_even_across_restarts(
    kafka_bootstrap, kafka_admin
):
    topics = Topics.create(kafka_admin, "poison-obs2")
    kafka = producer(kafka_bootstrap)
    matcher = start_matcher(kafka_bootstrap, topics, "obs2")
    try:
        now = time.time()
        send_fix(kafka, topics.drivers, Fix("obs2-driver", *NYC, now, status="available"))
        huge = {"request_id": "huge", "rider_id": "r", "latitude": "@", "longitude": 0, "timestamp": now}
        poison = json.dumps(huge).replace('"@"', "1" + "0" * 399).encode()
        poison_at = send(kafka, topics.requests, b"nyc", poison)
        pole = RideRequest("pole", "rider-pole", 90.0, 0.0, now)
        send_request(kafka, topics.requests, pole)
        send_request(kafka, topics.requests, RideRequest("canary-1", "rider-c1", *NYC, now))

        reader = TopicReader(kafka_bootstrap, topics.matches)
        reader.read(lambda r: {"pole", "canary-1"} <= {m.request_id for m in answers_of(r)}, 20, "pole and canary")
        outcomes = {m.request_id: m.outcome for m in answers_of(reader.records)}
        assert outcomes == {"pole": "no_driver", "canary-1": "matched"}

        matcher.stop()
        assert matcher.popen.returncode == 0, "stopped cleanly, not crashed"
        matcher = start_matcher(kafka_bootstrap, topics, "obs2", fresh_log=False)
        send_request(kafka, topics.requests, RideRequest("canary-2", "rider-c2", *NYC, time.time()))
        reader.read(lambda r: "canary-2" in {m.request_id for m in answers_of(r)}, 20, "the canary after a restart")
        counts = Counter(m.request_id for m in answers_of(reader.records))
        assert counts == {"pole": 1, "canary-1": 1, "canary-2": 1}, "each answered exactly once across the restart"
        reader.close()

        group = topics.tag
        wait_until(
            lambda: committed_to_the_end(kafka_admin, kafka_bootstrap, group, topics.requests),
            20,
            "the matcher committed every request it read",
        )
        dead = TopicReader(kafka_bootstrap, topics.requests + ".dlq")
        dead.read_to_end()  # a second copy, had the restart made one, is in a transaction committed by now
        assert dead_letter_origins(dead.records) == [(topics.requests, *poison_at, "bad_latitude")]
        dead.close()
        assert_no_traceback(matcher)
    finally:
        matcher.stop()
        kafka.close()
        topics.delete(kafka_admin)


def test_a_driver_id_with_a_lone_surrogate_is_refused_and_every_api_answer_stays_whole_json(stack):
    kafka, topics = stack.kafka, stack.topics
    now = time.time()
    surrogate = b'{"driver_id":"obs3-\\ud800","latitude":40.7,"longitude":-73.9,"timestamp":%f}' % now
    send(kafka, topics.drivers, None, surrogate)
    send_fix(kafka, topics.drivers, Fix("obs3-after", 40.7, -73.9, now))
    wait_until(lambda: driver(stack.base, "obs3-after"), 10, "the fix after it")
    listing = requests.get(stack.base + "/api/drivers", params={"limit": 10000}, timeout=10)
    assert listing.status_code == 200 and json.loads(listing.content.decode("utf-8"))["drivers"]
    assert not any(d.startswith("obs3-\ud800") for d in all_drivers(stack.base))
    missing = requests.get(stack.base + "/api/drivers/obs3-%ED%A0%80", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"] == "unknown driver"
    odd = requests.get(stack.base + "/api/drivers/" + urllib.parse.quote("obs3-\U0001f695\u202e", safe=""), timeout=5)
    assert odd.status_code == 404 and odd.content.isascii(), "any id comes back as ASCII JSON"


def test_a_fix_from_the_future_or_under_another_drivers_key_cannot_pin_or_move_a_driver(stack):
    kafka, topics = stack.kafka, stack.topics
    now = time.time()
    send_fix(kafka, topics.drivers, Fix("obs4-victim", 40.70, -73.90, now))
    wait_until(lambda: driver(stack.base, "obs4-victim"), 10, "the victim shows")
    send_fix(kafka, topics.drivers, Fix("obs4-victim", 40.99, -73.99, now + 250))  # refused: future_timestamp
    send_fix(kafka, topics.drivers, Fix("obs4-victim", 40.71, -73.91, now + 1))
    wait_until(lambda: driver(stack.base, "obs4-victim")["latitude"] == 40.71, 10, "the real fix after it moves it")

    send_fix(kafka, topics.drivers, Fix("obs4-victim", 40.50, -73.50, now + 2), key=b"attacker")  # key_mismatch
    send_fix(kafka, topics.drivers, Fix("obs4-victim", 40.72, -73.92, now + 3))
    wait_until(lambda: driver(stack.base, "obs4-victim")["latitude"] == 40.72, 10, "the victim's own next fix")
    trail = [point[0] for point in driver(stack.base, "obs4-victim")["trail"]]
    assert trail == [40.70, 40.71, 40.72], "neither the future fix nor the hijack ever held the marker"

    # A fix a few seconds ahead (clock skew) is taken as now: the next real fix still moves the driver.
    send_fix(kafka, topics.drivers, Fix("obs4-skewed", 40.73, -73.93, time.time() + 4))
    send_fix(kafka, topics.drivers, Fix("obs4-skewed", 40.74, -73.94, time.time() + 1))
    wait_until(lambda: (driver(stack.base, "obs4-skewed") or {}).get("latitude") == 40.74, 10, "not pinned by skew")
    stats = requests.get(stack.base + "/metrics", timeout=5).text
    assert re.search(r'dashboard_invalid_messages_total\{reason="future_timestamp"\} [1-9]', stats)
    assert re.search(r'dashboard_invalid_messages_total\{reason="key_mismatch"\} [1-9]', stats)


def test_an_id_with_a_control_character_is_refused_and_never_shown(stack):
    kafka, topics = stack.kafka, stack.topics
    send_fix(kafka, topics.drivers, Fix("obs5-\u0007bell", 40.7, -73.9, time.time()), key=None)
    send_fix(kafka, topics.drivers, Fix("obs5-after", 40.7, -73.9, time.time()))
    wait_until(lambda: driver(stack.base, "obs5-after"), 10, "the fix after it")
    assert not [d for d in all_drivers(stack.base) if d.startswith("obs5-\u0007")]
    stats = requests.get(stack.base + "/metrics", timeout=5).text
    assert re.search(r'dashboard_invalid_messages_total\{reason="bad_driver_id"\} [1-9]', stats)


def test_an_answer_whose_eta_would_overflow_is_refused_and_the_stats_keep_coming(stack):
    kafka, topics = stack.kafka, stack.topics
    rng = random.Random(5)
    for make in MATCH_CLASSES.values():
        hostile = make(rng, time.time())
        send(kafka, topics.matches, hostile.key, hostile.value)
    client = socketio.Client(reconnection=False)
    stats: list[dict] = []
    client.on("stats", stats.append)
    client.connect(stack.base, wait_timeout=10)
    try:
        wait_until(lambda: len(stats) >= 3, 10, "three stats events in a row")
    finally:
        client.disconnect()
    assert "riders' sweep failed" not in stack.dashboard.log()
    assert_no_traceback(stack.dashboard, stack.matcher)


# ---- dead-letter topics that cannot be written

# Every copy (the record plus our headers: well over 200 bytes) is larger than such a topic takes, so the
# broker refuses each one (MESSAGE_TOO_LARGE). Not smaller: a transaction's commit or abort marker (about
# 80 bytes) must still fit, or the broker's transaction coordinator can never finish the matcher's abort.
TOO_SMALL_FOR_A_COPY = {"max.message.bytes": "120"}


def test_a_dead_letter_topic_that_cannot_be_written_never_stalls_the_dashboard(kafka_bootstrap, kafka_admin):
    topics = Topics.create(kafka_admin, "poison-dlqfull")
    kafka_admin.create_topics(
        [NewTopic(topics.drivers + ".dlq", 1, replication_factor=-1, topic_configs=TOO_SMALL_FOR_A_COPY)],
        wait_for_metadata=True,
    )
    dashboard, base = start_dashboard(kafka_bootstrap, topics, "dlqfull")
    kafka = producer(kafka_bootstrap)
    try:
        now = time.time()
        for i in range(200):
            kafka.send(topics.drivers, key=b"x", value=b"not json %d" % i)
            fix = Fix(f"dlqfull-{i:03d}", 40.7, -73.9 + i * 1e-3, now)
            kafka.send(topics.drivers, key=fix.driver_id.encode(), value=encode_fix(fix))
        kafka.flush()
        wait_until(lambda: len(all_drivers(base)) == 200, 10, "every valid fix, without waiting on the copies")
        wait_until(lambda: _metric(base, "dashboard_dead_letter_failures_total") == 200, 40, "200 failures counted")
        health = requests.get(base + "/healthz", timeout=5)
        assert health.status_code == 200, "the map works: a warning, not an outage"
        assert "could not be dead-lettered" in health.json()["warnings"][0]
        assert health.json()["feeds"]["drivers"]["dead_letters"]["failed"] == 200
        assert _metric(base, "dashboard_dead_letters_total") == 0
    finally:
        kafka.close()
        dashboard.stop()
        topics.delete(kafka_admin)
    assert_no_traceback(dashboard)


def test_a_matcher_whose_dead_letter_topic_cannot_be_written_pauses_the_copies_and_keeps_answering(
    kafka_bootstrap, kafka_admin
):
    topics = Topics.create(kafka_admin, "poison-mdlq")
    kafka_admin.create_topics(
        [NewTopic(topics.requests + ".dlq", 1, replication_factor=-1, topic_configs=TOO_SMALL_FOR_A_COPY)],
        wait_for_metadata=True,
    )
    kafka = producer(kafka_bootstrap)
    matcher = start_matcher(kafka_bootstrap, topics, "mdlq")
    try:
        send_fix(kafka, topics.drivers, Fix("mdlq-driver", *NYC, time.time(), status="available"))
        send(kafka, topics.requests, b"nyc", b"not json")
        for n in range(3):
            send_request(kafka, topics.requests, RideRequest(f"after-{n}", f"r{n}", *NYC, time.time()))
        reader = TopicReader(kafka_bootstrap, topics.matches)
        reader.read(lambda r: {f"after-{n}" for n in range(3)} <= {m.request_id for m in answers_of(r)}, 30, "answers")
        assert Counter(m.request_id for m in answers_of(reader.records)) == {"after-0": 1, "after-1": 1, "after-2": 1}
        reader.close()
        matcher.wait_for_log(r"could not be written .*refused requests are not copied for 30 s")
        assert matcher.popen.poll() is None
    finally:
        matcher.stop()
        kafka.close()
        topics.delete(kafka_admin)


def _metric(base: str, name: str) -> float:
    for line in requests.get(base + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


# ---- the live fuzz

HOSTILE_FIXES = 3000
HOSTILE_REQUESTS = 1200
HOSTILE_MATCHES = 900
VALID_DRIVERS = 1500  # two fixes each
VALID_REQUESTS = 150


def test_five_thousand_hostile_records_among_valid_ones_cost_nothing_but_their_dead_letters(
    kafka_bootstrap, kafka_admin
):
    topics = Topics.create(kafka_admin, "poison-fuzz")
    dashboard, base = start_dashboard(kafka_bootstrap, topics, "fuzz")
    matcher = start_matcher(kafka_bootstrap, topics, "fuzz")
    kafka = producer(kafka_bootstrap)
    health = HealthWatch(base)
    rss_before = {p.name: psutil.Process(p.popen.pid).memory_info().rss for p in (dashboard, matcher)}
    rng = random.Random(10)
    try:
        expected, latest, request_ids = _send_the_fuzz(kafka, topics, rng)
        request_ids |= {rid for _, _, rid in _send_odd_requests(kafka, topics, rng)}

        wait_until(lambda: _all_on_the_map(base, latest), 30, "every valid driver at its latest fix on the map")
        answers = TopicReader(kafka_bootstrap, topics.matches)
        answers.read(lambda r: request_ids <= {m.request_id for m in answers_of(r)}, 60, "every valid request answered")
        wait_until(
            lambda: committed_to_the_end(kafka_admin, kafka_bootstrap, topics.tag, topics.requests),
            30,
            "the matcher committed every request",
        )
        wait_until(
            lambda: (
                _metric(base, "dashboard_dead_letters_pending") == 0
                and _metric(base, "dashboard_dead_letters_total")
                == sum(where[0] != topics.requests for where in expected)
            ),
            30,
            "the dashboard's dead letters are all acknowledged",
        )
        answers.read_to_end()
        counts = Counter(m.request_id for m in answers_of(answers.records))
        assert {rid: counts[rid] for rid in request_ids} == dict.fromkeys(request_ids, 1), "each exactly once"
        answers.close()

        for topic in topics.names():
            wanted = {where: reason for where, reason in expected.items() if where[0] == topic}
            dead = TopicReader(kafka_bootstrap, topic + ".dlq")
            dead.read_to_end()  # everything written: a record copied twice would be here too
            origins = dead_letter_origins(dead.records)
            dead.close()
            assert len(origins) == len(wanted), f"{topic}: each refused record copied exactly once"
            assert {(t, p, o): reason for t, p, o, reason in origins} == wanted, f"{topic}: with its reason"
        rss_after = {p.name: psutil.Process(p.popen.pid).memory_info().rss for p in (dashboard, matcher)}
    finally:
        health.stop()
        kafka.close()
        dashboard.stop()
        matcher.stop()
        topics.delete(kafka_admin)

    assert health.polls > 20 and health.bad == [], f"/healthz was not 200: {health.bad[:3]}"
    assert (dashboard.popen.returncode, matcher.popen.returncode) == (0, 0), "both ran throughout and stopped cleanly"
    assert_no_traceback(dashboard, matcher)
    assert "internal_error" not in dashboard.log() + matcher.log(), "no record found a bug"
    for name, rss in rss_after.items():
        grown_mb = (rss - rss_before[name]) / 2**20
        print(f"{name}: RSS {rss_before[name] / 2**20:.0f} -> {rss / 2**20:.0f} MiB")
        assert grown_mb < 150, f"{name} grew {grown_mb:.0f} MiB"


def _send_the_fuzz(
    kafka: KafkaProducer, topics: Topics, rng: random.Random
) -> tuple[dict[tuple[str, int, int], str], dict[str, tuple[float, float]], set[str]]:
    """Hostile and valid records interleaved; returns where each hostile one landed with the reason it
    must be refused for, each valid driver's latest position, and the valid request ids."""
    now = time.time()
    fixes, reqs, matches = hostile_fixes(rng, now), hostile_requests(rng, now), hostile_matches(rng, now)
    futures: list[tuple[str, Any, Hostile]] = []
    latest: dict[str, tuple[float, float]] = {}
    request_ids: set[str] = set()

    def hostile(topic: str, record: Hostile) -> None:
        futures.append((topic, kafka.send(topic, key=record.key, value=record.value), record))

    for i in range(HOSTILE_FIXES):
        hostile(topics.drivers, next(fixes))
        if i < 2 * VALID_DRIVERS:
            n, second = i % VALID_DRIVERS, i >= VALID_DRIVERS
            position = (40.65 + (n % 50) * 0.004 + second * 1e-4, -74.0 + (n // 50) * 0.004)
            fix = Fix(f"fuzz-{n:04d}", *position, time.time(), status="available", seq=int(second))
            kafka.send(topics.drivers, key=fix.driver_id.encode(), value=encode_fix(fix))
            latest[fix.driver_id] = position
        if i < HOSTILE_REQUESTS:
            hostile(topics.requests, next(reqs))
        if i < HOSTILE_MATCHES:
            hostile(topics.matches, next(matches))
        if i % 20 == 0 and len(request_ids) < VALID_REQUESTS:
            request = RideRequest(f"fuzz-{uuid.uuid4().hex}", "rider", 40.70, -73.95, time.time())
            kafka.send(topics.requests, key=request_key(40.70, -73.95), value=encode_request(request))
            request_ids.add(request.request_id)
    kafka.flush()
    expected = {}
    for topic, future, record in futures:
        metadata = future.get(timeout=30)
        expected[(topic, metadata.partition, metadata.offset)] = record.reason
    return expected, latest, request_ids


def _send_odd_requests(kafka: KafkaProducer, topics: Topics, rng: random.Random) -> list[tuple[bytes, bytes, str]]:
    odd = odd_but_valid_requests(rng, time.time())
    for key, value, _ in odd:
        kafka.send(topics.requests, key=key, value=value)
    kafka.flush()
    return odd


def _all_on_the_map(base: str, latest: dict[str, tuple[float, float]]) -> bool:
    held = all_drivers(base)
    return all(
        d in held and (held[d]["latitude"], held[d]["longitude"]) == (round(lat, 6), round(lon, 6))
        for d, (lat, lon) in latest.items()
    )


def test_a_dead_letter_of_an_internal_error_names_the_exception_class():
    """The header a bug's dead letter carries (the live processes never raise: see the fuzz above)."""
    from bus.deadletter import dead_letter_headers
    from tests.test_intake import FakeRecord

    refusal = Refusal.of_exception(ValueError("boom"))
    headers = dict(dead_letter_headers(FakeRecord(b"{}", 7, topic="t", partition=2, timestamp=123), refusal))
    assert headers[HEADER_EXCEPTION] == b"builtins.ValueError"
    assert (headers[HEADER_TOPIC], headers[HEADER_PARTITION], headers[HEADER_OFFSET]) == (b"t", b"2", b"7")
    assert headers["dlq.timestamp"] == b"123" and headers[HEADER_REASON] == b"internal_error"
