"""What ``GET /api/kafka`` answers, from the cluster's metadata and the feeds' positions: no I/O here.

:mod:`dashboard.metadata` asks Kafka for its metadata (brokers, and per partition the leader, the
replicas and the in-sync replicas) and folds each answer, or each failure, into a
:class:`ClusterState`; :func:`kafka_view` joins that state with the end offsets and positions the
feeds already probe (:class:`dashboard.feed.PartitionStatus`) into the JSON of docs/api.md.

A broker that is down is absent from the metadata: Kafka lists only the brokers that are
registered and serving. So "down" is derived: a broker id named as a replica of a partition, or
seen in an earlier answer, that is not among the live brokers now. A KRaft broker whose heartbeats
stopped is listed as fenced for a while before it disappears: fenced is down too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

# Kafka's error code for a topic that does not exist (UNKNOWN_TOPIC_OR_PARTITION).
UNKNOWN_TOPIC = 3
NO_LEADER = -1


@dataclass(frozen=True)
class Broker:
    id: int
    host: str
    port: int
    fenced: bool = False  # KRaft: registered, but its heartbeats stopped, so it serves nothing


@dataclass(frozen=True)
class PartitionMeta:
    partition: int
    leader: int | None  # None while no replica leads (every replica down, or an election under way)
    replicas: tuple[int, ...]  # in preference order: the first is the preferred leader
    isr: tuple[int, ...]


@dataclass(frozen=True)
class TopicMeta:
    topic: str
    exists: bool
    partitions: tuple[PartitionMeta, ...] = ()


@dataclass(frozen=True)
class Metadata:
    """One answer of the cluster: its live brokers and the topics asked about."""

    brokers: tuple[Broker, ...]
    topics: tuple[TopicMeta, ...]

    def topic(self, name: str) -> TopicMeta | None:
        return next((t for t in self.topics if t.topic == name), None)

    def replica_ids(self) -> set[int]:
        return {r for t in self.topics for p in t.partitions for r in (*p.replicas, *p.isr)}


class Position(Protocol):
    """Where a feed stands in one partition (:class:`dashboard.feed.PartitionStatus` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def end_offset(self) -> int | None: ...
    @property
    def position(self) -> int | None: ...
    @property
    def lag(self) -> int | None: ...


@dataclass(frozen=True)
class ClusterState:
    """The last metadata Kafka gave, the brokers ever seen, and since when Kafka has not answered.

    Replaced whole on every look (never mutated), so a request reads it without a lock.
    """

    metadata: Metadata | None = None
    known: Mapping[int, Broker] = field(default_factory=dict)  # every broker seen, by id: its last address
    updated_at: float | None = None  # epoch seconds of ``metadata``
    unreachable_since: float | None = None  # epoch seconds of the first failure in a row; None while answering
    reason: str | None = None  # the latest failure, while failing

    def answered(self, metadata: Metadata, now: float) -> ClusterState:
        known = {**self.known, **{b.id: b for b in metadata.brokers}}
        return ClusterState(metadata, known, now, None, None)

    def failed(self, reason: str, now: float) -> ClusterState:
        return replace(self, unreachable_since=self.unreachable_since or now, reason=reason)


def metadata_from(cluster: Mapping[str, Any], topics: Iterable[Mapping[str, Any]]) -> Metadata:
    """A :class:`Metadata` from kafka-python's ``describe_cluster()`` and ``describe_topics()`` answers."""
    brokers = tuple(
        sorted(
            (Broker(b["broker_id"], b["host"], b["port"], bool(b.get("is_fenced"))) for b in cluster["brokers"]),
            key=lambda b: b.id,
        )
    )
    return Metadata(brokers, tuple(_topic_meta(t) for t in topics))


def _topic_meta(topic: Mapping[str, Any]) -> TopicMeta:
    if topic["error_code"] == UNKNOWN_TOPIC:
        return TopicMeta(topic["name"], exists=False)
    partitions = tuple(
        PartitionMeta(
            p["partition_index"],
            None if p["leader_id"] == NO_LEADER else p["leader_id"],
            tuple(p["replica_nodes"]),
            tuple(p["isr_nodes"]),
        )
        for p in sorted(topic["partitions"], key=lambda p: p["partition_index"])
    )
    return TopicMeta(topic["name"], exists=True, partitions=partitions)


def brokers_json(state: ClusterState) -> list[dict[str, Any]]:
    """Every broker live, seen before or named as a replica, by id; ``up`` only if live now and not fenced."""
    live = {b.id: b for b in state.metadata.brokers} if state.metadata else {}
    named = state.metadata.replica_ids() if state.metadata else set()
    rows = []
    for broker_id in sorted({*live, *state.known, *named}):
        address = live.get(broker_id) or state.known.get(broker_id)
        rows.append(
            {
                "id": broker_id,
                "host": address.host if address else None,
                "port": address.port if address else None,
                "up": broker_id in live and not live[broker_id].fenced,
            }
        )
    return rows


def partitions_json(meta: TopicMeta | None, positions: Sequence[Position]) -> list[dict[str, Any]]:
    """One row per partition known from the metadata or from the feed (a partition new to either still shows)."""
    described = {p.partition: p for p in meta.partitions} if meta else {}
    read = {p.partition: p for p in positions}
    rows = []
    for number in sorted({*described, *read}):
        m, r = described.get(number), read.get(number)
        replicas, isr = (list(m.replicas), list(m.isr)) if m else ([], [])
        rows.append(
            {
                "partition": number,
                "leader": m.leader if m else None,
                "replicas": replicas,
                "isr": isr,
                "under_replicated": len(isr) < len(replicas),
                "end_offset": r.end_offset if r else None,
                "position": r.position if r else None,
                "lag": r.lag if r else None,
            }
        )
    return rows


def kafka_view(topics: Sequence[str], state: ClusterState, positions: Iterable[Position]) -> dict[str, Any]:
    """The body of ``GET /api/kafka`` (docs/api.md): the brokers, then each topic the dashboard reads."""
    by_topic: dict[str, list[Position]] = {}
    for p in positions:
        by_topic.setdefault(p.topic, []).append(p)
    rows = []
    for name in topics:
        meta = state.metadata.topic(name) if state.metadata else None
        read = by_topic.get(name, [])
        # Before the first answer nothing says a topic is missing: the feed having partitions says it exists.
        exists = meta.exists if meta else bool(read)
        rows.append({"topic": name, "exists": exists, "partitions": partitions_json(meta, read)})
    return {
        "brokers": brokers_json(state),
        "topics": rows,
        "updated_at": state.updated_at,
        "unreachable_since": state.unreachable_since,
        "error": view_error(state),
    }


def view_error(state: ClusterState) -> str | None:
    """A sentence saying why the metadata shown may be old, or None while Kafka answers."""
    if state.unreachable_since is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state.unreachable_since))
        shown = "no metadata yet" if state.metadata is None else "showing its last answer"
        return f"Kafka not reachable since {since} ({state.reason}); {shown}"
    if state.metadata is None:
        return "waiting for Kafka's first answer"
    return None
