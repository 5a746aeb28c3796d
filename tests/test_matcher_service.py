"""`python -m matcher` against a real broker: who gets which driver, exactly once, across kills and instances."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import matcher_command
from bus.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from fleet.geo import destination
from fleet.rides import MATCHED, NO_DRIVER, RideMatch, RideRequest, encode_request, parse_match, request_key
from fleet.schema import Fix, encode_fix, encode_key
from matcher.service import partition_of

CENTER = (40.758, -73.9855)


class Logs:
    """Collects a process's stderr lines in a thread, so a test can wait for one."""

    def __init__(self, process) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, timeout: float = 30.0, after: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                found = re.search(pattern, line)
                if found:
                    return found
            time.sleep(0.05)
        pytest.fail(f"no line matching {pattern!r} in {timeout} s; last lines:\n" + "\n".join(self.lines[-15:]))


@pytest.fixture
def topics(make_topic, kafka_admin):
    """driver-location, ride-requests, ride-matches of this test; the matcher's dead-letter topic is removed after."""
    names = {
        "drivers": make_topic("drv", partitions=2),
        "requests": make_topic("req", partitions=3),
        "matches": make_topic("match", partitions=3),
    }
    yield names
    dead_letters = names["requests"] + ".dlq"
    if dead_letters in kafka_admin.list_topics():
        kafka_admin.delete_topics([dead_letters])


def launch_matcher(processes, bootstrap: str, topics: dict, group: str, instance: str, *extra: str):
    process = processes(
        matcher_command(
            bootstrap,
            topics["drivers"],
            topics["requests"],
            topics["matches"],
            group,
            instance,
            "--log-interval-s",
            "1",
            *extra,
        ),
        env={"PYTHONUNBUFFERED": "1"},
    )
    return process, Logs(process)


def start_matcher(processes, bootstrap: str, topics: dict, group: str, instance: str = "m1", *extra: str):
    """A matcher, once it matches every partition (so request timestamps are not already old when read)."""
    process, logs = launch_matcher(processes, bootstrap, topics, group, instance, *extra)
    logs.wait_for(r"matching partitions \[0, 1, 2\]")
    return process, logs


def publish_drivers(producer: KafkaProducer, topic: str, drivers: dict[str, tuple[float, float]]) -> None:
    now = time.time()
    for driver_id, (lat, lon) in drivers.items():
        fix = Fix(driver_id, lat, lon, now, status="available")
        producer.send(topic, key=encode_key(driver_id), value=encode_fix(fix))
    producer.flush()


def publish_request(producer: KafkaProducer, topic: str, request_id: str, where: tuple[float, float]) -> None:
    request = RideRequest(request_id, f"rider-{request_id}", where[0], where[1], time.time())
    producer.send(topic, key=request_key(*where), value=encode_request(request))


class Answers:
    """Reads ride-matches read_committed from the start, keeping every answer (duplicates included)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.all: list[RideMatch] = []

    def read(self, until, timeout: float) -> list[RideMatch]:
        """Poll until ``until(answers by request id)`` holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(self.by_request()):
            for records in self.consumer.poll(timeout_ms=200).values():
                self.all += [parse_match(record.value, time.time()) for record in records]
        return self.all

    def by_request(self) -> dict[str, list[RideMatch]]:
        grouped = defaultdict(list)
        for answer in self.all:
            grouped[answer.request_id].append(answer)
        return grouped

    def close(self) -> None:
        self.consumer.close()


def assert_no_driver_held_two_riders(answers: list[RideMatch], reservation_timeout_s: float) -> None:
    """Drivers here never start a trip, so a driver's next rider comes only once its hold ran out."""
    by_driver = defaultdict(list)
    for answer in answers:
        if answer.outcome == MATCHED:
            by_driver[answer.driver_id].append(answer.timestamp)
    for driver_id, times in by_driver.items():
        times.sort()
        for earlier, later in zip(times, times[1:], strict=False):
            assert later - earlier >= reservation_timeout_s - 1e-6, f"{driver_id} held two riders at once"


def test_the_nearest_driver_wins_one_just_outside_the_radius_is_not_chosen_and_ties_go_to_the_smallest_id(
    kafka_bootstrap, topics, processes
):
    spots = {name: destination(*CENTER, 90, n * 20_000) for n, name in enumerate("ABCD")}  # 20 km apart
    drivers = {
        "a-far": destination(*spots["A"], 0, 900),
        "a-near": destination(*spots["A"], 200, 300),
        "b-outside": destination(*spots["B"], 45, 5010),
        "c-inside": destination(*spots["C"], 45, 4990),
        "d-2": destination(*spots["D"], 180, 500),
        "d-1": destination(*spots["D"], 180, 500),
        "d-3": destination(*spots["D"], 180, 500),
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    publish_drivers(producer, topics["drivers"], drivers)
    process, logs = start_matcher(processes, kafka_bootstrap, topics, "layouts", "m1", "--max-wait-s", "3")
    for name, where in spots.items():
        publish_request(producer, topics["requests"], f"r-{name}", where)
    producer.close()
    answers = Answers(kafka_bootstrap, topics["matches"])
    answers.read(lambda got: len(got) == 4, timeout=30)
    answers.close()
    got = {request_id: found[0] for request_id, found in answers.by_request().items()}
    assert got["r-A"].driver_id == "a-near" and got["r-A"].distance_m == pytest.approx(300, abs=1)
    assert got["r-B"].outcome == NO_DRIVER
    assert got["r-C"].driver_id == "c-inside"
    assert got["r-D"].driver_id == "d-1"
    assert len(answers.all) == 4


def test_a_thousand_requests_and_two_hundred_drivers_every_request_ends_once_and_no_driver_holds_two(
    kafka_bootstrap, topics, processes
):
    drivers = {f"drv-{n:03d}": destination(*CENTER, n * 1.8, 100 + n * 10) for n in range(200)}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=10)
    publish_drivers(producer, topics["drivers"], drivers)
    process, logs = start_matcher(
        processes, kafka_bootstrap, topics, "thousand", "m1", "--reservation-timeout-s", "2", "--max-wait-s", "4"
    )
    for n in range(1000):
        publish_request(producer, topics["requests"], f"req-{n:04d}", destination(*CENTER, n * 7 % 360, n % 2000))
    producer.close()
    answers = Answers(kafka_bootstrap, topics["matches"])
    answers.read(lambda got: len(got) == 1000, timeout=60)
    answers.read(lambda got: False, timeout=1)  # anything answered twice shows up here
    answers.close()
    by_request = answers.by_request()
    assert len(by_request) == 1000
    assert all(len(found) == 1 for found in by_request.values()), "a request answered twice"
    outcomes = [found[0].outcome for found in by_request.values()]
    assert outcomes.count(MATCHED) >= 200 and outcomes.count(NO_DRIVER) > 0
    assert_no_driver_held_two_riders(answers.all, reservation_timeout_s=2)
    assert process.poll() is None


def test_a_matcher_killed_mid_stream_and_restarted_answers_every_request_exactly_once(
    kafka_bootstrap, topics, processes
):
    drivers = {f"drv-{n:03d}": destination(*CENTER, n * 1.2, 50 + n * 7) for n in range(300)}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    publish_drivers(producer, topics["drivers"], drivers)
    flags = ("--reservation-timeout-s", "1", "--max-wait-s", "2", "--commit-interval-ms", "50")
    first, logs = start_matcher(processes, kafka_bootstrap, topics, "killed", "m1", *flags)

    # Staten Island: still the nyc area (one partition), but 30 km from every driver; these riders
    # wait, then get no_driver, while the riders after them are matched.
    nowhere = (40.54, -74.18)
    assert request_key(*nowhere) == request_key(*CENTER)

    def send_requests() -> None:
        for n in range(3000):
            where = destination(*CENTER, n % 360, n % 1500) if n % 2 else nowhere
            publish_request(producer, topics["requests"], f"req-{n:04d}", where)
            if n % 100 == 99:
                time.sleep(0.1)  # about 1,000 requests a second for 3 s

    sender = threading.Thread(target=send_requests)
    sender.start()
    answers = Answers(kafka_bootstrap, topics["matches"])
    answers.read(lambda got: len(got) >= 500, timeout=30)
    first.kill()  # SIGKILL: no commit, no goodbye; its open transaction stays open
    first.wait()
    answered_before_kill = len(answers.by_request())
    second, second_logs = start_matcher(processes, kafka_bootstrap, topics, "killed", "m1", *flags)
    sender.join()
    producer.close()
    answers.read(lambda got: len(got) == 3000, timeout=60)
    answers.read(lambda got: False, timeout=1.5)
    answers.close()
    by_request = answers.by_request()
    assert answered_before_kill < 3000, "the kill came too late to test anything"
    assert len(by_request) == 3000, f"{3000 - len(by_request)} requests lost"
    twice = [request_id for request_id, found in by_request.items() if len(found) > 1]
    assert not twice, f"{len(twice)} requests answered more than once, e.g. {twice[:3]}"
    assert_no_driver_held_two_riders(answers.all, reservation_timeout_s=1)
    # Requests answered after an older one that still waited were read again and not answered again.
    assert second_logs.wait_for(r"(\d+) already answered") and any(
        int(m.group(1)) > 0 for m in map(re.compile(r"(\d+) already answered").search, second_logs.lines) if m
    )


def test_malformed_requests_go_to_the_dead_letter_topic_with_their_reason(kafka_bootstrap, topics, processes):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    publish_drivers(producer, topics["drivers"], {"drv-1": destination(*CENTER, 0, 200)})
    process, logs = start_matcher(processes, kafka_bootstrap, topics, "malformed")
    bad = {
        b"not json at all": "not_json",
        b'{"request_id": "r1", "rider_id": "u1", "latitude": 40.7}': "missing_field",
        b'{"request_id": "r2", "rider_id": "u2", "latitude": 140, "longitude": 0, "timestamp": 1}': "bad_latitude",
        b'{"request_id": "", "rider_id": "u3", "latitude": 1, "longitude": 0, "timestamp": 1}': "bad_request_id",
    }
    for raw in bad:
        producer.send(topics["requests"], key=b"nyc", value=raw, headers=[("origin", b"test")])
    publish_request(producer, topics["requests"], "good", CENTER)
    producer.close()
    answers = Answers(kafka_bootstrap, topics["matches"])
    answers.read(lambda got: "good" in got, timeout=30)
    answers.close()
    assert answers.by_request()["good"][0].driver_id == "drv-1"

    dead = KafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    partition = TopicPartition(topics["requests"] + ".dlq", 0)
    dead.assign([partition])
    dead.seek_to_beginning(partition)
    records = []
    deadline = time.monotonic() + 15
    while len(records) < len(bad) and time.monotonic() < deadline:
        for batch in dead.poll(timeout_ms=200).values():
            records += batch
    dead.close()
    assert {r.value: dict(r.headers)[HEADER_REASON].decode() for r in records} == bad
    assert all(dict(r.headers)["origin"] == b"test" for r in records)
    assert all(dict(r.headers)[HEADER_TOPIC].decode() == topics["requests"] for r in records)
    assert sorted(int(dict(r.headers)[HEADER_OFFSET]) for r in records) == [0, 1, 2, 3], "where each came from"
    assert len({dict(r.headers)[HEADER_PARTITION] for r in records}) == 1, "one key (nyc), one partition"
    assert process.poll() is None


def test_two_matchers_in_one_group_share_the_requests_and_never_share_a_driver(kafka_bootstrap, topics, processes):
    # Three areas whose requests land on the three partitions of ride-requests.
    by_partition: dict[int, tuple[float, float]] = {}
    for lat in range(10, 60, 7):
        for lon in range(10, 90, 11):
            by_partition.setdefault(partition_of(f"tile:{lat}:{lon}", 3), (lat + 0.5, lon + 0.5))
    areas = [by_partition[p] for p in range(3)]
    drivers = {
        f"drv-{a}-{n:02d}": destination(*where, n * 7, 100 + n * 30) for a, where in enumerate(areas) for n in range(30)
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    publish_drivers(producer, topics["drivers"], drivers)
    flags = ("--reservation-timeout-s", "2", "--max-wait-s", "3")
    first, first_logs = start_matcher(processes, kafka_bootstrap, topics, "shared", "left", *flags)
    second, second_logs = launch_matcher(processes, kafka_bootstrap, topics, "shared", "right", *flags)
    second_logs.wait_for(r"matching partitions \[\d")  # the group rebalanced: each has a share
    for n in range(300):
        publish_request(producer, topics["requests"], f"req-{n:03d}", destination(*areas[n % 3], n, n * 3 % 2000))
    producer.close()
    answers = Answers(kafka_bootstrap, topics["matches"])
    answers.read(lambda got: len(got) == 300, timeout=60)
    answers.read(lambda got: False, timeout=1)
    answers.close()
    by_request = answers.by_request()
    assert len(by_request) == 300 and all(len(found) == 1 for found in by_request.values())
    assert_no_driver_held_two_riders(answers.all, reservation_timeout_s=2)
    for logs in (first_logs, second_logs):
        matched = [int(m.group(1)) for m in map(re.compile(r"(\d+) matched").search, logs.lines) if m]
        assert sum(matched) > 0, "one matcher did no work"
