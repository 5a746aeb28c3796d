"""Shared fixtures: a real Kafka broker for the session, unique topics, and process cleanup.

The broker is the local one from `python -m broker` (started if needed, stopped at the end
if this session started it), or the cluster named by KAFKA_BOOTSTRAP_SERVERS. A test that
needs Kafka and cannot get it fails with the reason; nothing is skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from broker.cluster import LocalCluster, node_ports, wait_fully_replicated
from broker.local import BrokerError, BrokerSettings, LocalBroker, port_in_use

# Property tests are the same on every run (derandomized: CI never fails on a new random draw) and keep no
# example database in the repository; a run with HYPOTHESIS_PROFILE=explore draws fresh examples locally.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
# The tutorial's producer and consumer, byte for byte (see tests/reference/README.md).
SHARED_REFERENCE = ROOT / "tests" / "reference"
ARTIFACTS = ROOT / "test-artifacts"


# The topics every process reads unless told otherwise, besides the driver topic (tests name theirs).
SHARED_TOPIC_SETTINGS = ("RIDE_REQUEST_TOPIC", "RIDE_MATCH_TOPIC", "ZONES_TOPIC", "ZONE_EVENTS_TOPIC")


@pytest.fixture(scope="session", autouse=True)
def shared_topics_of_this_session() -> Iterator[None]:
    """Every process the tests start reads riders, zones and zone events of this session's own topics, unless a
    test names its own.

    A dashboard reads the zones topic whole, the last hour of zone events and the last minutes of rides:
    ``make demo`` on the same broker leaves its riders, example zones and their events in the default topics,
    which would show up as alerts, rows and Socket.IO events in tests that are about something else.
    """
    session = uuid.uuid4().hex[:8]
    names = {
        name: f"test-session-{session}-{name.lower().removesuffix('_topic').replace('_', '-')}"
        for name in SHARED_TOPIC_SETTINGS
    }
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a running Kafka, for the whole session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        try:
            KafkaAdminClient(bootstrap_servers=external.split(","), bootstrap_timeout_ms=15000).close()
        except Exception as e:  # noqa: BLE001 - any failure means the same thing here
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={external} is not reachable: {e}", pytrace=False)
        yield external
        return
    broker = LocalBroker(BrokerSettings.from_env())
    try:
        result = broker.start()
    except BrokerError as e:
        pytest.fail(f"could not start the local Kafka broker: {e}", pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        if not result.already_running:
            broker.stop()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","))
    yield admin
    admin.close()


@pytest.fixture
def make_topic(kafka_admin: KafkaAdminClient, request: pytest.FixtureRequest) -> Iterator:
    """Create topics with names unique to this test; they are deleted afterwards."""
    created: list[str] = []

    def make(stem: str = "t", partitions: int = 1, configs: dict[str, str] | None = None) -> str:
        test_name = request.node.name.replace("[", "-").replace("]", "")[:40]
        name = f"test-{test_name}-{stem}-{uuid.uuid4().hex[:8]}"
        kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=-1, topic_configs=configs or {})],
            wait_for_metadata=True,
        )
        created.append(name)
        return name

    yield make
    if created:
        kafka_admin.delete_topics(created)


@contextmanager
def fleet_topics(admin: KafkaAdminClient, stem: str, partitions: int = 2) -> Iterator[dict[str, str]]:
    """driver-location, ride-requests and ride-matches of unique names, deleted afterwards."""
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    names = {"drivers": name, "requests": name + "-requests", "matches": name + "-matches"}
    admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=-1) for topic in names.values()],
        wait_for_metadata=True,
    )
    try:
        yield names
    finally:
        admin.delete_topics(list(names.values()))


@pytest.fixture
def processes() -> Iterator:
    """Start subprocesses that are always stopped after the test, passed or failed."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        process = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module", autouse=True)
def no_process_outlives_its_module() -> Iterator[None]:
    """A test or fixture that fails half-way (a start that times out, an assertion before its stop) leaves
    no dashboard, matcher or simulator of tests/stack.py running after its module."""
    from tests.stack import Process  # tests/stack.py imports this module's helpers

    yield
    for process in Process.started:
        process.stop()
    Process.started.clear()


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this module's own, on free ports, that its tests may stop, kill and restart."""
    broker = LocalBroker(
        BrokerSettings(port=free_port(), controller_port=free_port(), node_dir=tmp_path_factory.mktemp("broker"))
    )
    try:
        broker.start()
    except BrokerError as e:
        pytest.fail(f"could not start a private Kafka broker: {e}", pytrace=False)
    yield broker
    broker.stop()


def free_cluster_port(nodes: int) -> int:
    """A base port whose derived listener and controller ports (broker/cluster.py) are all free."""
    while True:
        base = free_port()
        ports = [port for node in range(1, nodes + 1) for port in node_ports(base, node)]
        if max(ports) < 65536 and not any(port_in_use(port) for port in ports):
            return base


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A three-node KRaft cluster of the session's own (tests marked ``cluster``), on free ports.

    Tests may kill, stop and start its nodes; each gives it back whole (every node running, every
    partition fully replicated), which :func:`whole_cluster` checks after each of them.
    """
    settings = BrokerSettings(
        nodes=3, cluster_port=free_cluster_port(3), cluster_dir=tmp_path_factory.mktemp("cluster")
    )
    cluster = LocalCluster(settings)
    try:
        cluster.start()
    except BrokerError as e:
        pytest.fail(f"could not start a three-node Kafka cluster: {e}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def whole_cluster(kafka_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster, brought back whole after the test whatever it did to its nodes."""
    yield kafka_cluster
    stopped = [n for n, pid in kafka_cluster.running().items() if pid is None]
    for node in stopped:
        kafka_cluster.start_node(node)
    assert wait_fully_replicated(kafka_cluster.bootstrap, 60), "the cluster did not get every replica back in sync"


PYTHON = sys.executable
