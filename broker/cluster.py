"""A Kafka cluster of several KRaft nodes on this machine, for the demo and the fault tests.

Every node is a broker and a controller at once (combined mode): three JVMs instead of six on a
two-core laptop, and killing a node takes a broker and a controller away together, which is the
harder case for the cluster (a new controller leader and new partition leaders at once). Production
clusters run the controllers apart (docs/kafka-tour.md says why). Node N's ports are derived from
``cluster_port`` (N=1 listens there, each next node 100 above, its controller one above its
listener) and its files live in ``cluster_dir/node-N``; the cluster's id and size are recorded in
``cluster_dir`` when it is first started, so every later command finds the same nodes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from broker.local import BrokerError, LocalBroker, Quorum, StartResult, new_cluster_id, wait_for
from broker.settings import BrokerSettings


def node_ports(cluster_port: int, node: int) -> tuple[int, int]:
    """(listener, controller) ports of node ``node`` (1-based)."""
    port = cluster_port + 100 * (node - 1)
    return port, port + 1


@dataclass(frozen=True)
class PartitionReplicas:
    topic: str
    partition: int
    leader: int  # -1 while no replica can lead
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


class LocalCluster:
    """Nodes 1..size, each a :class:`LocalBroker` in its own folder with its own ports."""

    def __init__(self, config: BrokerSettings, size: int | None = None) -> None:
        self.config = config
        self.root = config.cluster_dir
        self.size_file = self.root / "nodes"
        self.cluster_id_file = self.root / "cluster.id"
        self.size = size or self.recorded_size() or config.nodes
        voters = tuple((n, node_ports(config.cluster_port, n)[1]) for n in self.node_ids)
        self.nodes = {n: LocalBroker(self._node_settings(n), Quorum(n, voters)) for n in self.node_ids}

    @property
    def node_ids(self) -> range:
        return range(1, self.size + 1)

    @property
    def bootstrap(self) -> str:
        """Every node's listener: clients need one that is up, whichever it is."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def node(self, node_id: int) -> LocalBroker:
        if not self.exists():
            raise BrokerError(f"there is no local cluster in {self.root} yet: run `python -m broker start --nodes 3`")
        if node_id not in self.nodes:
            raise BrokerError(f"the local cluster has nodes 1 to {self.size}, not {node_id}")
        return self.nodes[node_id]

    def recorded_size(self) -> int | None:
        """How many nodes the cluster in ``root`` was made with, or None if none was."""
        try:
            return int(self.size_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def exists(self) -> bool:
        return self.recorded_size() is not None

    def running(self) -> dict[int, int | None]:
        """Each node's pid, None for a node that is not running."""
        return {n: node.running_pid() for n, node in self.nodes.items()}

    # --- commands ------------------------------------------------------------------------

    def start(self, timeout_s: float | None = None) -> StartResult:
        """Start every node that is not running and wait until all of them are registered and unfenced."""
        started = time.monotonic()
        self._record_layout()
        launched = {n: node.launch() for n, node in self.nodes.items()}
        if all(result.already_running for result in launched.values()):
            return StartResult(pid=launched[1].pid, seconds=0.0, already_running=True)
        for n, result in launched.items():
            if not result.already_running:
                self.nodes[n].wait_until_ready(result.pid, started)
        self.wait_for_brokers(set(self.node_ids), timeout_s or self.config.start_timeout_s)
        notes = [f"node {n}: {note}" for n, result in launched.items() for note in result.notes]
        return StartResult(pid=launched[1].pid, seconds=time.monotonic() - started, notes=notes)

    def start_node(self, node_id: int) -> StartResult:
        """Start one node of a cluster that was made before, and wait until it is a live broker again."""
        node = self.node(node_id)
        started = time.monotonic()
        self._write_node_cluster_id(node)
        result = node.launch()
        if not result.already_running:
            node.wait_until_ready(result.pid, started)
            self.wait_for_brokers({node_id}, self.config.start_timeout_s)
            result.seconds = time.monotonic() - started
        return result

    def stop(self) -> dict[int, float | None]:
        """Stop every node at once: stopped one by one, the last ones would wait for a controller
        majority that is already gone."""
        with ThreadPoolExecutor(max_workers=self.size) as pool:
            stopping = {n: pool.submit(node.stop) for n, node in self.nodes.items()}
        return {n: future.result() for n, future in stopping.items()}

    def reset(self) -> None:
        for node in self.nodes.values():
            node.reset()
        self.size_file.unlink(missing_ok=True)
        self.cluster_id_file.unlink(missing_ok=True)
        if self.root.exists() and not any(self.root.iterdir()):
            self.root.rmdir()

    # --- what the cluster says -----------------------------------------------------------

    def brokers_up(self, timeout_s: float = 3.0) -> dict[int, bool]:
        """Registered brokers and whether each is live (unfenced); empty when no node answers.

        Only running nodes are asked: a node killed a moment ago is still in the cluster's metadata until
        its session expires, and a client that picks it waits for a timeout.
        """
        bootstrap = ",".join(node.bootstrap for node in self.nodes.values() if node.running_pid() is not None)
        if not bootstrap:
            return {}
        try:
            with admin_client(bootstrap, timeout_s) as admin:
                brokers = admin.describe_cluster()["brokers"]
        except KafkaError:
            return {}
        return {b["broker_id"]: not b["is_fenced"] for b in brokers}

    def wait_for_brokers(self, node_ids: set[int], timeout_s: float) -> None:
        """Wait until each of ``node_ids`` is a registered, unfenced broker."""

        def all_live() -> bool:
            up = self.brokers_up()
            return all(up.get(n, False) for n in node_ids)

        if not wait_for(all_live, timeout_s, step_s=0.5):
            raise BrokerError(
                f"nodes {sorted(node_ids)} were not live brokers within {timeout_s:.0f} s "
                "(log: python -m broker logs --node N)"
            )

    # --- steps ---------------------------------------------------------------------------

    def _node_settings(self, node_id: int) -> BrokerSettings:
        port, controller_port = node_ports(self.config.cluster_port, node_id)
        return replace(self.config, port=port, controller_port=controller_port, node_dir=self.root / f"node-{node_id}")

    def _record_layout(self) -> None:
        recorded = self.recorded_size()
        if recorded is not None and recorded != self.size:
            raise BrokerError(
                f"the local cluster in {self.root} was made with {recorded} nodes, not {self.size}: start it "
                f"with --nodes {recorded}, or `python -m broker stop` and `python -m broker reset` to remake it"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.cluster_id_file.exists():
            self.cluster_id_file.write_text(new_cluster_id() + "\n")
        self.size_file.write_text(f"{self.size}\n")
        for node in self.nodes.values():
            self._write_node_cluster_id(node)

    def _write_node_cluster_id(self, node: LocalBroker) -> None:
        """Every node is formatted with the cluster's one id."""
        node.config.node_dir.mkdir(parents=True, exist_ok=True)
        node.cluster_id_file.write_text(self.cluster_id_file.read_text())


@contextmanager
def admin_client(bootstrap: str, timeout_s: float = 5.0) -> Iterator[KafkaAdminClient]:
    """An admin client that gives up after ``timeout_s`` instead of kafka-python's 30 s."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        bootstrap_timeout_ms=int(timeout_s * 1000),
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        yield admin
    finally:
        admin.close()


def partition_replicas(admin: KafkaAdminClient, topics: list[str] | None = None) -> list[PartitionReplicas]:
    """Leader, replicas and in-sync replicas of every partition of ``topics`` (all topics when None)."""
    described = admin.describe_topics(topics)
    return [
        PartitionReplicas(
            topic=topic["name"],
            partition=p["partition_index"],
            leader=p["leader_id"],
            replicas=tuple(p["replica_nodes"]),
            isr=tuple(p["isr_nodes"]),
        )
        for topic in described
        for p in sorted(topic["partitions"], key=lambda p: p["partition_index"])
    ]


def wait_fully_replicated(bootstrap: str, timeout_s: float = 60.0) -> bool:
    """Wait until no partition of any topic misses a replica from its in-sync set: a rolling restart
    must not take the next node down before then, or a partition could lose its last in-sync copy."""

    def full() -> bool:
        try:
            with admin_client(bootstrap) as admin:
                return not any(p.under_replicated or p.leader < 0 for p in partition_replicas(admin))
        except KafkaError:
            return False

    return wait_for(full, timeout_s, step_s=0.5)
