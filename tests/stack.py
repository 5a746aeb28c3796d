"""The real processes of a fleet (dashboard, matcher) on topics of their own, and readers that check
what reached Kafka: shared by the tests that attack the running system (poison, faults)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import requests
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from bench.common import dashboard_command, matcher_command
from bus.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from fleet import decode
from fleet.decode import Refusal
from fleet.rides import RideMatch, RideRequest, encode_request, request_key
from fleet.schema import Fix, encode_fix
from tests.conftest import ARTIFACTS, ROOT, free_port
from tests.test_dashboard import wait_until


@dataclass
class Topics:
    tag: str  # unique to this run: group and transactional ids too, so no run meets another's state
    drivers: str
    requests: str
    matches: str

    @classmethod
    def create(cls, admin: KafkaAdminClient, stem: str) -> Topics:
        tag = f"{stem}-{uuid.uuid4().hex[:8]}"
        topics = cls(tag, f"{tag}-drv", f"{tag}-req", f"{tag}-match")
        admin.create_topics([NewTopic(t, 3, replication_factor=-1) for t in topics.names()], wait_for_metadata=True)
        return topics

    def names(self) -> list[str]:
        return [self.drivers, self.requests, self.matches]

    def delete(self, admin: KafkaAdminClient) -> None:
        existing = set(admin.list_topics())
        doomed = [t for name in self.names() for t in (name, name + ".dlq") if t in existing]
        if doomed:
            admin.delete_topics(doomed)


@dataclass
class Process:
    """A product process writing its log to test-artifacts/, stopped by SIGTERM (then killed) at the end."""

    # Every one started in this module, so that none outlives it (conftest's no_process_outlives_its_module).
    started: ClassVar[list[Process]] = []

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return ARTIFACTS / f"{self.name}.log"

    def start(self) -> Process:
        ARTIFACTS.mkdir(exist_ok=True)
        with open(self.log_path, "a") as log:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        Process.started.append(self)
        return self

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, pattern: str, timeout: float = 30.0, after: int = 0) -> None:
        wait_until(lambda: re.search(pattern, self.log()[after:]), timeout, f"{self.name} logs {pattern!r}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_dashboard(
    bootstrap: str, topics: Topics, name: str, port: int | None = None, fresh_log: bool = True
) -> tuple[Process, str]:
    """A dashboard on ``port`` (a free one by default), once its /healthz says 200."""
    port = port or free_port()
    process = Process(
        f"{name}-dashboard",
        dashboard_command(port, topics.drivers, bootstrap),
        {"RIDE_REQUEST_TOPIC": topics.requests, "RIDE_MATCH_TOPIC": topics.matches},
    )
    if fresh_log:
        process.log_path.unlink(missing_ok=True)
    process.start()
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_status(base + "/healthz") == 200, 30, f"{name}'s dashboard is healthy")
    return process, base


def start_matcher(bootstrap: str, topics: Topics, name: str, *extra: str, fresh_log: bool = True) -> Process:
    process = Process(
        f"{name}-matcher",
        matcher_command(
            bootstrap,
            *topics.names(),
            topics.tag,
            "m1",
            *("--log-interval-s", "2", "--max-wait-s", "3", *extra),
        ),
    )
    if fresh_log:
        process.log_path.unlink(missing_ok=True)
    before = len(process.log()) if process.log_path.exists() else 0
    process.start()
    process.wait_for_log(r"matching partitions \[0, 1, 2\]", after=before)
    return process


def http_status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=5, max_request_size=2 * 1024 * 1024)


def send(kafka: KafkaProducer, topic: str, key: bytes | None, value: bytes | None) -> tuple[int, int]:
    """Send one record and wait for it: its (partition, offset)."""
    metadata = kafka.send(topic, key=key, value=value).get(timeout=30)
    return metadata.partition, metadata.offset


def send_fix(kafka: KafkaProducer, topic: str, fix: Fix, key: bytes | None = ...) -> tuple[int, int]:
    return send(kafka, topic, fix.driver_id.encode() if key is ... else key, encode_fix(fix))


def send_request(kafka: KafkaProducer, topic: str, request: RideRequest) -> tuple[int, int]:
    return send(kafka, topic, request_key(request.latitude, request.longitude), encode_request(request))


def all_drivers(base: str) -> dict[str, dict[str, Any]]:
    """Every driver the dashboard holds, page by page."""
    drivers: dict[str, dict[str, Any]] = {}
    after = ""
    while True:
        page = requests.get(base + "/api/drivers", params={"limit": 10000, "after": after}, timeout=10).json()
        drivers.update((d["driver_id"], d) for d in page["drivers"])
        if page["next"] is None:
            return drivers
        after = page["next"]


def driver(base: str, driver_id: str) -> dict[str, Any] | None:
    response = requests.get(base + "/api/drivers/" + urllib.parse.quote(driver_id, safe=""), timeout=5)
    return response.json() if response.status_code == 200 else None


class TopicReader:
    """Reads every partition of a topic from the beginning, read_committed, and keeps every record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","), isolation_level="read_committed", fetch_max_bytes=16 * 1024 * 1024
        )
        self.topic = topic
        self.records: list = []
        self._assigned = False

    def read(self, until, timeout: float, what: str) -> list:
        deadline = time.monotonic() + timeout
        while not until(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting until {what} ({len(self.records)} read)")
            if not self._assigned:
                partitions = self.consumer.partitions_for_topic(self.topic)
                if not partitions:
                    time.sleep(0.2)
                    continue
                tps = [TopicPartition(self.topic, p) for p in partitions]
                self.consumer.assign(tps)
                self.consumer.seek_to_beginning(*tps)
                self._assigned = True
            for batch in self.consumer.poll(timeout_ms=200).values():
                self.records += batch
        return self.records

    def read_to_end(self) -> list:
        """Everything written (committed) to the topic up to now: read until each partition's end as of now."""
        self.read(lambda r: self._assigned, 15, f"{self.topic} exists")
        partitions = list(self.consumer.assignment())
        ends = self.consumer.end_offsets(partitions)
        return self.read(lambda r: all(self.consumer.position(tp) >= ends[tp] for tp in partitions), 15, "the end")

    def close(self) -> None:
        self.consumer.close()


def committed_to_the_end(admin: KafkaAdminClient, bootstrap: str, group: str, topic: str) -> bool:
    """Whether the consumer group has committed every partition of ``topic`` up to its end: for the matcher,
    every request read is answered or dead-lettered, in a committed transaction."""
    committed = admin.list_group_offsets(group)[group]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return all((committed[tp].offset if tp in committed else 0) >= ends[tp] for tp in partitions)


def answers_of(records: list) -> list[RideMatch]:
    """The valid answers among ride-matches records (a hostile producer writes there too)."""
    decoded = [decode.MATCHES(r.key, r.value, time.time()) for r in records]
    return [m for m in decoded if not isinstance(m, Refusal)]


def dead_letter_origins(records: list) -> list[tuple[str, int, int, str]]:
    """(topic, partition, offset, reason) of each dead letter, from its headers."""
    origins = []
    for record in records:
        headers = dict(record.headers)
        origins.append(
            (
                headers[HEADER_TOPIC].decode(),
                int(headers[HEADER_PARTITION]),
                int(headers[HEADER_OFFSET]),
                headers[HEADER_REASON].decode(),
            )
        )
    return origins


class HealthWatch:
    """Polls /healthz in a thread and keeps every answer that was not 200."""

    def __init__(self, base: str, interval_s: float = 0.1) -> None:
        self.base = base
        self.bad: list[tuple[float, int | None, str]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                response = requests.get(self.base + "/healthz", timeout=5)
                status, body = response.status_code, response.text
            except requests.RequestException as e:
                status, body = None, str(e)
            self.polls += 1
            if status != 200:
                self.bad.append((time.time(), status, body))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def assert_no_traceback(*processes: Process) -> None:
    for process in processes:
        log = process.log()
        assert "Traceback" not in log, (
            f"{process.name} logged a traceback:\n{log[log.index('Traceback') - 500 :][:3000]}"
        )


# ---- the dashboard's view of the Kafka cluster (GET /api/kafka)


def kafka_panel(base: str) -> dict:
    return requests.get(base + "/api/kafka", timeout=10).json()


def panel_shows_down(base: str, node: int) -> bool:
    """The dashboard's Kafka view: ``node`` down, leading nothing, in no in-sync set."""
    view = kafka_panel(base)
    partitions = [p for topic in view["topics"] for p in topic["partitions"]]
    down = [b["id"] for b in view["brokers"] if not b["up"]]
    return (
        down == [node]
        and all(p["leader"] not in (node, None) for p in partitions)
        and all(node not in p["isr"] and p["under_replicated"] for p in partitions if node in p["replicas"])
    )


def panel_shows_whole(base: str) -> bool:
    view = kafka_panel(base)
    partitions = [p for topic in view["topics"] for p in topic["partitions"]]
    return all(b["up"] for b in view["brokers"]) and not any(p["under_replicated"] for p in partitions)
