"""Settings of the local broker: each environment variable, its default and its flag, declared once here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fleet.settings import Setting, Settings, port_number, positive_int, setting_field

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / ".work"


def java_heap(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", value):
        raise ValueError(f"{raw!r} is not a heap size like 512m or 2g")
    return value


def node_count(raw: str) -> int:
    value = positive_int(raw)
    if value > MAX_NODES:
        raise ValueError(f"{value} nodes is more than this machine's local cluster allows (1-{MAX_NODES})")
    return value


# Each node is a JVM with its own heap; more than five on one machine teaches nothing a three-node cluster does not.
MAX_NODES = 5

BROKER_PORT = Setting("BROKER_PORT", 9092, "Port of the local broker's PLAINTEXT listener (127.0.0.1).", port_number)
BROKER_CONTROLLER_PORT = Setting(
    "BROKER_CONTROLLER_PORT", 9093, "Port of the local broker's KRaft CONTROLLER listener.", port_number
)
BROKER_NODE_DIR = Setting(
    "BROKER_NODE_DIR", WORK_DIR / "node", "Where the local broker keeps its config, data and logs.", Path
)
BROKER_NODES = Setting(
    "BROKER_NODES",
    1,
    "How many KRaft nodes `python -m broker start` and `make demo` run: 1 is the single broker, 3 a local cluster.",
    node_count,
)
BROKER_CLUSTER_PORT = Setting(
    "BROKER_CLUSTER_PORT",
    9192,
    "Listener port of the local cluster's node 1; node N listens 100·(N-1) above it, its controller one above that.",
    port_number,
)
BROKER_CLUSTER_DIR = Setting(
    "BROKER_CLUSTER_DIR",
    WORK_DIR / "cluster",
    "Where the local cluster keeps each node's config, data and logs (node-1, node-2, ...).",
    Path,
)
BROKER_HEAP = Setting("BROKER_HEAP", "512m", "Java heap of the local broker (-Xmx).", java_heap)
JAVA_HOME = Setting("JAVA_HOME", None, "The Java 17+ that runs the local broker (default: `java` on PATH).", Path)
KAFKA_HOME = Setting(
    "KAFKA_HOME", None, "An existing Kafka install whose libs/ the local broker uses instead of Maven's jars.", Path
)


@dataclass(frozen=True)
class BrokerSettings(Settings):
    """Everything the local broker is configured with (``python -m broker --help``)."""

    port: int = setting_field(BROKER_PORT, "--port", "PORT")
    controller_port: int = setting_field(BROKER_CONTROLLER_PORT, "--controller-port", "PORT")
    node_dir: Path = setting_field(BROKER_NODE_DIR, "--node-dir", "DIR")
    nodes: int = setting_field(BROKER_NODES, "--nodes", "N")
    cluster_port: int = setting_field(BROKER_CLUSTER_PORT, "--cluster-port", "PORT")
    cluster_dir: Path = setting_field(BROKER_CLUSTER_DIR, "--cluster-dir", "DIR")
    heap: str = setting_field(BROKER_HEAP, "--heap", "SIZE")
    java_home: Path | None = setting_field(JAVA_HOME)
    kafka_home: Path | None = setting_field(KAFKA_HOME)
    start_timeout_s: float = field(default=90.0)  # not a setting: how long `start` waits for the broker to answer
