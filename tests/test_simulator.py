"""`python -m simulator` against a real Kafka broker: what it sends, how it starts and stops."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, TopicPartition

from bus.partitioning import key_partition
from fleet.geo import AREAS, haversine_m
from fleet.schema import Fix, parse_fix
from tests.conftest import PYTHON, ROOT, SHARED_REFERENCE, free_port

NYC = AREAS["nyc"]
MAX_SPEED_MPS = 60 / 3.6
ROUNDING_M = 0.2  # coordinates travel with 6 decimals
TOTALS = re.compile(r"totals: sent (\d+), acknowledged (\d+), failed (\d+)")


def simulator(processes, bootstrap: str, topic: str, *flags: str) -> subprocess.Popen:
    return processes([PYTHON, "-m", "simulator", "--bootstrap-servers", bootstrap, "--topic", topic, *flags])


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out, err


def totals(out: str) -> tuple[int, int, int]:
    match = TOTALS.search(out)
    assert match, f"no totals line in {out!r}"
    return tuple(int(n) for n in match.groups())


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[tuple[bytes, Fix, int]]:
    """Every record of ``topic`` as (key, fix, partition), waiting until ``expected`` have arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend((r.key, parse_fix(r.value, now=time.time()), r.partition) for r in batch)
    # Anything beyond ``expected`` would be a duplicate: give it a moment to show up.
    for batch in consumer.poll(timeout_ms=500).values():
        records.extend((r.key, parse_fix(r.value, now=time.time()), r.partition) for r in batch)
    consumer.close()
    return records


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    total = sum(consumer.end_offsets(partitions).values()) if partitions else 0
    consumer.close()
    return total


def records_in_topic_once_settled(bootstrap: str, topic: str, at_least: int, timeout: float = 20.0) -> int:
    """The topic's record count once it reaches ``at_least`` (a restarted broker needs a moment), else the last seen."""
    deadline = time.monotonic() + timeout
    while (count := end_offsets(bootstrap, topic)) < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
    return count


def wait_for_records(bootstrap: str, topic: str, at_least: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while end_offsets(bootstrap, topic) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} records in {topic} after {timeout} s"
        time.sleep(0.2)


def test_every_fix_of_n_drivers_over_k_intervals_arrives_in_order_inside_the_area(
    kafka_bootstrap, make_topic, processes
):
    drivers, rounds = 20, 10
    topic = make_topic("fleet", partitions=6)
    process = simulator(
        processes,
        kafka_bootstrap,
        topic,
        "--drivers",
        str(drivers),
        "--interval",
        "0.2",
        "--count",
        str(drivers * rounds),
        "--offline-share",
        "0",
        "--seed",
        "3",
    )
    out, _ = finish(process)
    assert totals(out) == (drivers * rounds, drivers * rounds, 0)

    records = read_topic(kafka_bootstrap, topic, drivers * rounds)
    assert len(records) == drivers * rounds
    trails = defaultdict(list)
    partitions = defaultdict(set)
    for key, fix, partition in records:
        assert key == fix.driver_id.encode("utf-8")
        trails[fix.driver_id].append(fix)
        partitions[fix.driver_id].add(partition)
    assert sorted(trails) == [f"drv-{i:05d}" for i in range(1, drivers + 1)]
    for driver_id, trail in trails.items():
        assert [f.seq for f in trail] == list(range(rounds)), driver_id
        # The partition kafka-python's default partitioner would pick, though the simulator computes it itself.
        assert partitions[driver_id] == {key_partition(driver_id.encode(), 6)}
        for fix in trail:
            assert NYC.contains(fix.latitude, fix.longitude)
            assert fix.latitude == round(fix.latitude, 6) and fix.longitude == round(fix.longitude, 6)
            assert fix.status in {"available", "on_trip"} and 0 <= fix.speed_kmh <= 60 and 0 <= fix.heading <= 360
        for a, b in zip(trail, trail[1:], strict=False):
            assert b.timestamp - a.timestamp == pytest.approx(0.2, abs=1e-6)
            step = haversine_m(a.latitude, a.longitude, b.latitude, b.longitude)
            assert step <= MAX_SPEED_MPS * (b.timestamp - a.timestamp) + ROUNDING_M
    first_round = sorted(trail[0].timestamp for trail in trails.values())
    gaps = [b - a for a, b in zip(first_round, first_round[1:], strict=False)]
    assert gaps == pytest.approx([0.2 / drivers] * (drivers - 1), abs=1e-6), "fixes spread evenly over the interval"
    assert abs(first_round[0] - time.time()) < 60


def test_the_same_seed_gives_the_same_positions(kafka_bootstrap, make_topic, processes):
    flags = ("--drivers", "5", "--interval", "0.1", "--count", "100", "--seed", "42", "--street-grid")
    topics = [make_topic("run1"), make_topic("run2")]
    runs = [simulator(processes, kafka_bootstrap, topic, *flags) for topic in topics]
    for process in runs:
        finish(process)

    def positions(topic):
        records = read_topic(kafka_bootstrap, topic, 100)
        return sorted((f.driver_id, f.seq, f.latitude, f.longitude, f.heading, f.status) for _, f, _ in records)

    first, second = positions(topics[0]), positions(topics[1])
    assert len(first) == 100 and first == second


def test_the_topic_is_created_with_six_partitions_when_missing(kafka_bootstrap, kafka_admin, processes):
    topic = f"test-simulator-created-{uuid.uuid4().hex[:8]}"
    try:
        finish(simulator(processes, kafka_bootstrap, topic, "--drivers", "3", "--interval", "0.1", "--count", "3"))
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
        assert consumer.partitions_for_topic(topic) == set(range(6))
        consumer.close()
    finally:
        kafka_admin.delete_topics([topic])


def test_the_classic_tutorial_consumer_reads_our_messages(kafka_bootstrap, make_topic, processes):
    topic = make_topic("classic", partitions=6)
    finish(simulator(processes, kafka_bootstrap, topic, "--drivers", "10", "--interval", "0.1", "--count", "30"))
    consumer = processes(
        [
            PYTHON,
            str(SHARED_REFERENCE / "classic_consumer.py"),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--group-id",
            f"classic-{uuid.uuid4().hex[:8]}",
            "--max-messages",
            "30",
            "--timeout",
            "15",
        ]
    )
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, err
    updates = re.findall(
        r"Received location update for Driver (drv-\d{5}): \((-?[\d.]+), (-?[\d.]+)\) at ([\d.]+)", out
    )
    assert len(updates) == 30
    assert {driver for driver, *_ in updates} == {f"drv-{i:05d}" for i in range(1, 11)}
    assert all(NYC.contains(float(lat), float(lon)) for _, lat, lon, _ in updates)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--drivers", "-5"], "argument --drivers: -5 is not a positive integer"),
        (["--count", "0"], "argument --count: 0 is not a positive integer"),
        (["--interval", "abc"], "argument --interval: 'abc' is not a number"),
        (["--bbox", "41,-74,40,-73"], "argument --bbox: min_lat 41.0 is not below max_lat 40.0"),
        (["--bbox", "40,-74,95,-73"], "argument --bbox: max_lat 95.0 is outside [-90, 90]"),
        (["--area", "atlantis"], "argument --area: unknown area 'atlantis'"),
        (["--on-trip-share", "0.8", "--offline-share", "0.3"], "their sum must be below 1"),
        (["--wings", "2"], "unrecognized arguments: --wings 2"),
        (["--riders-per-minute", "-3"], "argument --riders-per-minute: -3 is negative"),
        (["--riders-per-minute", "lots"], "argument --riders-per-minute: 'lots' is not a number"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, message):
    result = subprocess.run([PYTHON, "-m", "simulator", *flags], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_bad_environment_variable_is_one_line_and_exit_2():
    result = subprocess.run(
        [PYTHON, "-m", "simulator"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"SIMULATOR_DRIVERS": "many", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "python -m simulator: error: SIMULATOR_DRIVERS='many' is not valid: 'many' is not an integer"
    ]


def test_help_shows_every_default():
    result = subprocess.run([PYTHON, "-m", "simulator", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for flag, env in [
        ("--drivers", "SIMULATOR_DRIVERS"),
        ("--interval", "SIMULATOR_INTERVAL"),
        ("--topic", "DRIVER_TOPIC"),
        ("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS"),
    ]:
        assert flag in help_text and f"env {env}; default:" in help_text
    assert "default: 200" in help_text and "default: driver-location" in help_text


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_flushes_and_prints_totals_with_everything_acknowledged(
    stop_signal, kafka_bootstrap, make_topic, processes
):
    topic = make_topic("stop", partitions=6)
    process = simulator(processes, kafka_bootstrap, topic, "--drivers", "50", "--interval", "0.1")
    wait_for_records(kafka_bootstrap, topic, at_least=200)
    process.send_signal(stop_signal)
    out, err = finish(process, timeout=40)
    sent, acked, failed = totals(out)
    assert sent >= 200 and sent == acked and failed == 0
    assert f"{stop_signal.name} received" in err and "Traceback" not in err
    assert end_offsets(kafka_bootstrap, topic) == sent


def test_a_broker_that_is_not_up_is_retried_with_a_clear_message(processes):
    port = free_port()
    process = simulator(processes, f"127.0.0.1:{port}", "nowhere", "--drivers", "2")
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if "not reachable yet" in line:
            break
    assert f"Kafka at 127.0.0.1:{port} not reachable yet" in lines[-1]
    process.send_signal(signal.SIGTERM)
    out, err = finish(process, timeout=30)
    assert "stopped before Kafka was reachable" in out
    assert "Traceback" not in err


def test_a_broker_restart_mid_run_keeps_the_simulator_going_and_every_fix_counted(private_broker, processes):
    bootstrap, topic = private_broker.bootstrap, "restart"
    process = simulator(processes, bootstrap, topic, "--drivers", "20", "--interval", "0.1")
    wait_for_records(bootstrap, topic, at_least=100)
    private_broker.stop()
    time.sleep(2.0)
    private_broker.start()
    before_restart = end_offsets(bootstrap, topic)
    wait_for_records(bootstrap, topic, at_least=before_restart + 200)
    process.send_signal(signal.SIGINT)
    out, err = finish(process, timeout=60)
    sent, acked, failed = totals(out)
    assert sent == acked + failed and acked > before_restart
    assert records_in_topic_once_settled(bootstrap, topic, acked) == acked, "every acknowledged fix is there, once"
    assert "Traceback" not in err


def test_a_broker_gone_at_shutdown_still_accounts_for_every_fix(private_broker, processes):
    bootstrap, topic = private_broker.bootstrap, "gone"
    process = simulator(processes, bootstrap, topic, "--drivers", "20", "--interval", "0.1", "--flush-timeout", "2")
    wait_for_records(bootstrap, topic, at_least=100)
    private_broker.stop()
    try:
        time.sleep(1.0)  # fixes keep coming while nobody answers
        process.send_signal(signal.SIGINT)
        out, err = finish(process, timeout=60)
    finally:
        private_broker.start()
    sent, acked, failed = totals(out)
    assert failed > 0 and sent == acked + failed
    assert "counting them as failed" in err and "Traceback" not in err
    # A broker stopping mid-answer may have written a fix whose acknowledgement never came back:
    # failed means "not confirmed", so the topic holds every acknowledged fix and at most all sent.
    assert acked <= records_in_topic_once_settled(bootstrap, topic, acked) <= sent
