"""`make demo`: start Kafka (unless KAFKA_BOOTSTRAP_SERVERS names one), the dashboard, the matcher, the zone
processor and the simulator, print the URL, and stop everything it started on Ctrl-C.

Two example zones are written to the ``zones`` topic the first time (a polygon and a circle in the
simulator's area, where its drivers roam), so the map shows zones and alerts from the start.

Before it starts anything it looks for a demo already running and for a taken dashboard port: then it
says where and how to stop the other one and exits with 1, touching nothing. A child that exits makes
the whole demo stop and exit with that child's code and its last line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402

from broker.cluster import LocalCluster  # noqa: E402
from broker.local import LocalBroker, port_in_use, process_alive  # noqa: E402
from broker.settings import WORK_DIR, BrokerSettings  # noqa: E402
from bus.clients import ensure_topics  # noqa: E402
from bus.runtime import install_shutdown  # noqa: E402
from dashboard.settings import DashboardSettings  # noqa: E402
from fleet.errors import FleetError  # noqa: E402
from fleet.geo import AREAS, BBox  # noqa: E402
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS, ZONES_TOPIC  # noqa: E402
from fleet.zones import Zone, encode_zone, parse_zone  # noqa: E402
from simulator.settings import SimulatorSettings  # noqa: E402

# Each process of the demo, in start order.
COMPONENTS = [
    ("dashboard", ["-m", "dashboard"]),
    ("matcher", ["-m", "matcher"]),
    ("zones", ["-m", "zones"]),
    # A dozen riders a minute keeps a 200-driver fleet busy without running out of free drivers.
    ("simulator", ["-m", "simulator", "--riders-per-minute", "12"]),
]
PID_FILE = WORK_DIR / "demo.pid"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class Child:
    """A process of the demo; its stderr goes on to the terminal, and its last line is kept for the summary."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.last_line = ""
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._echo, daemon=True).start()

    def _echo(self) -> None:
        for line in self.process.stderr:
            sys.stderr.write(line)
            if line.strip():
                self.last_line = line.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def demo_already_running(dashboard: DashboardSettings) -> str | None:
    """Why this demo must not start (another demo, or something on the dashboard's port), or None."""
    if PID_FILE.exists():
        pid = int(PID_FILE.read_text().split()[0])
        if process_alive(pid):
            return (
                f"a demo is already running (pid {pid}, map at {dashboard.url}); stop it with Ctrl-C in "
                f"its terminal or `kill {pid}`, then run make demo again"
            )
    if port_in_use(dashboard.port):
        return (
            f"port {dashboard.port} is taken (another dashboard?); stop what listens there "
            f"(`ss -ltnp 'sport = :{dashboard.port}'` shows it), or set DASHBOARD_PORT=5001 make demo"
        )
    return None


def start_kafka() -> tuple[str, Callable[[], object] | None]:
    """Bootstrap servers, and how to stop the Kafka the demo started (None if it was running before)."""
    # Only a cluster named in the environment counts: the setting's default is the local broker's address.
    external = os.environ.get(KAFKA_BOOTSTRAP_SERVERS.name)
    if external:
        say(f"using the Kafka cluster at {external} (KAFKA_BOOTSTRAP_SERVERS); no local broker started")
        return external, None
    settings = BrokerSettings.from_env()
    if settings.nodes > 1:
        return start_cluster(LocalCluster(settings, size=settings.nodes))
    broker = LocalBroker(settings)
    result = broker.start()
    if result.already_running:
        say(f"Kafka broker already running at {broker.bootstrap}; the demo leaves it running")
        return broker.bootstrap, None
    say(f"Kafka broker ready at {broker.bootstrap} in {result.seconds:.1f} s")
    return broker.bootstrap, broker.stop


def start_cluster(cluster: LocalCluster) -> tuple[str, Callable[[], object] | None]:
    result = cluster.start()
    if result.already_running:
        say(f"Kafka cluster of {cluster.size} nodes already running at {cluster.bootstrap}; the demo leaves it running")
        return cluster.bootstrap, None
    say(f"Kafka cluster of {cluster.size} nodes ready at {cluster.bootstrap} in {result.seconds:.1f} s")
    say("try `.venv/bin/python -m broker kill --node 2` and watch the page's Kafka section (docs/kafka-tour.md)")
    return cluster.bootstrap, cluster.stop


def example_zones(area: BBox) -> list[Zone]:
    """A station-sized polygon at the area's centre and a queue-sized circle a quarter of the way in from its
    south-west corner: the simulator's drivers cross both within minutes."""
    lat = (area.min_lat + area.max_lat) / 2
    lon = (area.min_lon + area.max_lon) / 2
    d_lat, d_lon = 0.0025, 0.0035  # ~280 m by ~300 m at New York's latitude
    station = [
        [lon - d_lon, lat - d_lat],
        [lon + d_lon, lat - d_lat],
        [lon + d_lon, lat + d_lat],
        [lon - d_lon, lat + d_lat],
    ]
    queue_lat = area.min_lat + (area.max_lat - area.min_lat) / 4
    queue_lon = area.min_lon + (area.max_lon - area.min_lon) / 4
    return [
        parse_zone(
            {
                "type": "Feature",
                "properties": {"name": "Central station", "hysteresis_m": 20},
                "geometry": {"type": "Polygon", "coordinates": [station + station[:1]]},
            },
            "demo-central-station",
        ),
        parse_zone(
            {
                "type": "Feature",
                "properties": {"name": "Airport queue", "radius_m": 400, "dwell_s": 60, "hysteresis_m": 30},
                "geometry": {"type": "Point", "coordinates": [queue_lon, queue_lat]},
            },
            "demo-airport-queue",
        ),
    ]


def write_example_zones(bootstrap: str, env: dict[str, str]) -> None:
    """The example zones, unless the zones topic holds them already (deleted ones stay deleted)."""
    topic = ZONES_TOPIC.read(env)
    try:
        simulator = SimulatorSettings.from_env(env)
        area = simulator.bbox or AREAS[simulator.area]
    except FleetError:  # the simulator itself will say what is wrong
        area = AREAS["nyc"]
    servers = bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        ensure_topics(admin, {topic: 1}, {"cleanup.policy": "compact"})
    finally:
        admin.close()
    seen: set[str] = set()
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 10
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                seen.update(r.key.decode("utf-8", "replace") for r in records if r.key is not None)
    finally:
        consumer.close()
    missing = [zone for zone in example_zones(area) if zone.zone_id not in seen]
    if not missing:
        return
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    try:
        for zone in missing:
            producer.send(topic, key=zone.zone_id.encode("utf-8"), value=encode_zone(zone)).get(timeout=10)
    finally:
        producer.close()
    say(f"wrote the example zones {', '.join(repr(z.name) for z in missing)} to {topic}")


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return True
        except urllib.error.HTTPError:
            return True  # it answers; health explains itself on the page
        except OSError:
            time.sleep(0.2)
    return False


def run_children(env: dict[str, str], url: str, stop: threading.Event) -> int:
    """Start the children, then wait until Ctrl-C (0) or until one exits (its exit code, at least 1)."""
    children: list[Child] = []
    failed = 0
    try:
        for name, args in COMPONENTS:
            child = Child(name, args, env)
            children.append(child)
            say(f"started {name} (pid {child.process.pid})")
            if name == "dashboard" and wait_for_http(url, child.process):
                say(f"open {url} in your browser")
        say("running; press Ctrl-C to stop everything the demo started")
        while not stop.is_set() and not failed:
            for child in children:
                code = child.process.poll()
                if code is not None:
                    say(f"{child.name} exited with code {code}: {child.last_line or 'no message'}; stopping the demo")
                    failed = code or 1
            stop.wait(0.5)
    finally:
        for child in reversed(children):
            child.stop()
            say(f"stopped {child.name}")
    return failed


def main() -> int:
    try:
        dashboard = DashboardSettings.from_env()
    except FleetError as e:
        say(f"error: {e}")
        return 2
    reason = demo_already_running(dashboard)
    if reason:
        say(f"not starting: {reason}")
        return 1
    stop = install_shutdown()
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    PID_FILE.write_text(f"{os.getpid()}\n")
    stop_kafka = None
    try:
        bootstrap, stop_kafka = start_kafka()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
        try:
            write_example_zones(bootstrap, env)
        except KafkaError as e:  # the demo runs without them
            say(f"could not write the example zones ({type(e).__name__}: {e}); going on without them")
        if stop.is_set():
            return 0
        return run_children(env, dashboard.url, stop)
    except FleetError as e:  # the broker could not start (its port taken, no Java...)
        say(f"error: {e}")
        return 1
    finally:
        if stop_kafka is not None:
            stop_kafka()
            say("stopped Kafka")
        PID_FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
