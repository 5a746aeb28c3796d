"""GET /api/kafka without a broker: metadata and positions to JSON (pure), and the metadata watch with a fake client."""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from dashboard import metadata
from dashboard.feed import PartitionStatus as Pos
from dashboard.kafka_view import (
    ClusterState,
    brokers_json,
    kafka_view,
    metadata_from,
    view_error,
)
from dashboard.metadata import MetadataWatch

NOW = 1_795_645_154.0


def cluster(*ids: int, fenced: tuple[int, ...] = ()) -> dict[str, Any]:
    """kafka-python's describe_cluster() answer."""
    return {
        "cluster_id": "c",
        "controller_id": ids[0] if ids else -1,
        "brokers": [
            {"broker_id": i, "host": f"kafka-{i}", "port": 9092, "rack": None, "is_fenced": i in fenced} for i in ids
        ],
    }


def topic(name: str, *partitions: tuple[int, list[int], list[int]]) -> dict[str, Any]:
    """kafka-python's describe_topics() entry: (leader, replicas, isr) per partition, numbered from 0."""
    return {
        "error_code": 0,
        "name": name,
        "partitions": [
            {"error_code": 0, "partition_index": n, "leader_id": leader, "replica_nodes": replicas, "isr_nodes": isr}
            for n, (leader, replicas, isr) in enumerate(partitions)
        ],
    }


def missing(name: str) -> dict[str, Any]:
    return {"error_code": 3, "name": name, "partitions": []}


THREE = cluster(1, 2, 3)
HEALTHY = topic("fixes", (1, [1, 2, 3], [1, 2, 3]), (2, [2, 3, 1], [2, 3, 1]), (3, [3, 1, 2], [3, 1, 2]))
# Broker 2 died: it leaves the brokers; partition 1 elects 3, and 2 leaves every ISR.
BROKER_2_DEAD = topic("fixes", (1, [1, 2, 3], [1, 3]), (3, [2, 3, 1], [3, 1]), (3, [3, 1, 2], [3, 1]))


def state_of(
    cluster_answer: dict[str, Any], *topics: dict[str, Any], before: ClusterState | None = None
) -> ClusterState:
    return (before or ClusterState()).answered(metadata_from(cluster_answer, topics), NOW)


def test_a_healthy_partition_shows_its_leader_replicas_isr_and_the_feeds_offsets():
    view = kafka_view(["fixes"], state_of(THREE, HEALTHY), [Pos("fixes", 0, 120, 100)])
    first = view["topics"][0]["partitions"][0]
    assert first == {
        "partition": 0,
        "leader": 1,
        "replicas": [1, 2, 3],
        "isr": [1, 2, 3],
        "under_replicated": False,
        "end_offset": 120,
        "position": 100,
        "lag": 20,
    }
    assert view["brokers"] == [{"id": i, "host": f"kafka-{i}", "port": 9092, "up": True} for i in (1, 2, 3)]
    assert view["updated_at"] == NOW and view["error"] is None and view["unreachable_since"] is None


def test_a_dead_broker_is_down_its_partitions_move_leader_and_shrink_their_isr():
    state = state_of(cluster(1, 3), BROKER_2_DEAD, before=state_of(THREE, HEALTHY))
    view = kafka_view(["fixes"], state, [])
    assert [(b["id"], b["up"]) for b in view["brokers"]] == [(1, True), (2, False), (3, True)]
    assert view["brokers"][1]["host"] == "kafka-2", "a broker seen before keeps its address"
    rows = view["topics"][0]["partitions"]
    assert [r["leader"] for r in rows] == [1, 3, 3]
    assert [r["isr"] for r in rows] == [[1, 3], [3, 1], [3, 1]]
    assert all(r["under_replicated"] for r in rows)


def test_a_broker_never_seen_but_named_as_a_replica_is_down_without_an_address():
    view = kafka_view(["fixes"], state_of(cluster(1, 3), BROKER_2_DEAD), [])
    assert view["brokers"][1] == {"id": 2, "host": None, "port": None, "up": False}


def test_a_fenced_broker_is_listed_but_down():
    state = state_of(cluster(1, 2, 3, fenced=(2,)), BROKER_2_DEAD)
    assert [(b["id"], b["up"]) for b in brokers_json(state)] == [(1, True), (2, False), (3, True)]


def test_the_broker_coming_back_is_up_again_and_the_isr_recovers():
    died = state_of(cluster(1, 3), BROKER_2_DEAD, before=state_of(THREE, HEALTHY))
    back = state_of(THREE, HEALTHY, before=died)
    view = kafka_view(["fixes"], back, [])
    assert all(b["up"] for b in view["brokers"])
    assert not any(r["under_replicated"] for r in view["topics"][0]["partitions"])


def test_a_partition_without_leader_shows_null():
    state = state_of(cluster(1), topic("fixes", (-1, [2], [])))
    row = kafka_view(["fixes"], state, [])["topics"][0]["partitions"][0]
    assert row["leader"] is None and row["under_replicated"]


def test_a_missing_topic_says_so_and_is_never_a_row_of_partitions():
    view = kafka_view(["fixes", "rides"], state_of(THREE, HEALTHY, missing("rides")), [])
    assert [(t["topic"], t["exists"], len(t["partitions"])) for t in view["topics"]] == [
        ("fixes", True, 3),
        ("rides", False, 0),
    ]


def test_partitions_known_only_to_the_feed_or_only_to_the_metadata_both_show():
    state = state_of(cluster(1), topic("fixes", (1, [1], [1])))
    rows = kafka_view(["fixes"], state, [Pos("fixes", 1, 5, None)])["topics"][0]["partitions"]
    assert [(r["partition"], r["leader"], r["end_offset"], r["lag"]) for r in rows] == [
        (0, 1, None, None),
        (1, None, 5, None),
    ]


def test_topics_keep_the_order_asked_and_positions_go_to_their_own_topic():
    state = state_of(cluster(1), topic("b", (1, [1], [1])), topic("a", (1, [1], [1])))
    view = kafka_view(["b", "a"], state, [Pos("a", 0, 9, 9), Pos("b", 0, 4, 1)])
    assert [(t["topic"], t["partitions"][0]["lag"]) for t in view["topics"]] == [("b", 3), ("a", 0)]


def test_before_any_answer_the_view_waits_and_the_feed_alone_says_a_topic_exists():
    view = kafka_view(["fixes", "rides"], ClusterState(), [Pos("fixes", 0, 3, 3)])
    assert view["error"] == "waiting for Kafka's first answer" and view["brokers"] == [] and view["updated_at"] is None
    assert [t["exists"] for t in view["topics"]] == [True, False]
    assert view["topics"][0]["partitions"][0]["leader"] is None


def test_kafka_away_keeps_the_last_answer_and_says_since_when():
    answered = state_of(THREE, HEALTHY)
    away = answered.failed("KafkaTimeoutError: timed out", NOW + 10).failed("NodeNotReadyError: 1", NOW + 12)
    view = kafka_view(["fixes"], away, [])
    assert view["unreachable_since"] == NOW + 10, "since the first failure in a row"
    assert view["updated_at"] == NOW and len(view["topics"][0]["partitions"]) == 3
    assert view["error"].startswith("Kafka not reachable since 2026-11-25 ")
    assert "NodeNotReadyError" in view["error"] and "showing its last answer" in view["error"]
    assert state_of(THREE, HEALTHY, before=away).unreachable_since is None, "an answer clears it"


def test_unreachable_before_any_answer_says_there_is_no_metadata_yet():
    error = view_error(ClusterState().failed("KafkaConnectionError", NOW))
    assert error is not None and error.endswith("(KafkaConnectionError); no metadata yet")


# ---- the metadata watch (I/O shell) with a fake admin client: when it asks, what it keeps


class FakeAdmin:
    def __init__(self) -> None:
        self.answers: list[tuple[dict[str, Any], list[dict[str, Any]]] | Exception] = []
        self.looks = 0
        self.current: tuple[dict[str, Any], list[dict[str, Any]]] = ({}, [])
        self.topics_asked: list[list[str]] = []
        self.closed = False

    def describe_cluster(self) -> dict[str, Any]:
        """The next answer (the last one again once all were given) or its exception; one look each call."""
        answer = self.answers[min(self.looks, len(self.answers) - 1)]
        self.looks += 1
        if isinstance(answer, Exception):
            raise answer
        self.current = answer
        return answer[0]

    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        self.topics_asked.append(topics)
        return self.current[1]

    def close(self) -> None:
        self.closed = True


def started(watch: MetadataWatch) -> threading.Thread:
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    return thread


def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_watch_asks_nothing_until_someone_asks_then_answers_the_first_request_fresh():
    admin = FakeAdmin()
    admin.answers = [(THREE, [HEALTHY])]
    built = []
    watch = MetadataWatch("k:9092", ("fixes",), 0.05, time.sleep, admin_factory=lambda: built.append(1) or admin)
    thread = started(watch)
    time.sleep(0.2)
    assert built == [] and admin.looks == 0, "no client and no request while nobody asks"
    state = watch.latest(wait_s=2.0)
    assert state.metadata is not None and state.metadata.topic("fixes") is not None
    assert admin.topics_asked[0] == ["fixes"]
    until(lambda: admin.looks >= 3)  # then every interval while asked
    watch.stop()
    thread.join(5)
    assert not thread.is_alive() and admin.closed


def test_the_watch_goes_quiet_when_nobody_asked_lately(monkeypatch):
    monkeypatch.setattr(metadata, "IDLE_AFTER_S", 0.2)
    admin = FakeAdmin()
    admin.answers = [(THREE, [HEALTHY])]
    watch = MetadataWatch("k:9092", ("fixes",), 0.02, time.sleep, admin_factory=lambda: admin)
    thread = started(watch)
    watch.latest(wait_s=2.0)
    time.sleep(0.4)
    quiet = admin.looks
    time.sleep(0.3)
    assert admin.looks == quiet, "no look while nobody asks"
    watch.latest(wait_s=2.0)
    assert admin.looks > quiet
    watch.stop()
    thread.join(5)


def test_a_failing_look_keeps_the_last_answer_and_a_later_one_clears_the_error():
    admin = FakeAdmin()
    admin.answers = [(THREE, [HEALTHY]), KafkaTimeoutError("no answer")]
    watch = MetadataWatch("k:9092", ("fixes",), 0.02, time.sleep, admin_factory=lambda: admin)
    thread = started(watch)
    watch.latest(wait_s=2.0)
    until(lambda: watch.state.unreachable_since is not None)
    assert watch.state.metadata is not None and watch.state.metadata.brokers[0].id == 1
    assert watch.state.reason == "KafkaTimeoutError: no answer"
    admin.answers.append((cluster(1, 3), [BROKER_2_DEAD]))
    until(lambda: watch.state.unreachable_since is None)
    assert [b.id for b in watch.state.metadata.brokers] == [1, 3]
    watch.stop()
    thread.join(5)


def test_a_request_to_a_watch_that_cannot_connect_returns_within_its_wait_saying_why():
    def refuse() -> Any:
        time.sleep(0.05)
        raise KafkaConnectionError()

    watch = MetadataWatch("k:9092", ("fixes",), 0.05, time.sleep, admin_factory=refuse)
    thread = started(watch)
    began = time.monotonic()
    state = watch.latest(wait_s=1.0)
    assert time.monotonic() - began < 1.5
    assert state.metadata is None and state.reason is not None and "KafkaConnectionError" in state.reason
    watch.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_a_watch_not_started_answers_at_once():
    watch = MetadataWatch("k:9092", ("fixes",), 2.0, time.sleep, admin_factory=FakeAdmin)
    began = time.monotonic()
    assert watch.latest(wait_s=5.0) == ClusterState()
    assert time.monotonic() - began < 0.5


def test_an_unexpected_error_rebuilds_the_client_and_is_reported():
    admins: list[FakeAdmin] = []

    def build() -> FakeAdmin:
        admin = FakeAdmin()
        admin.answers = [KeyError("brokers")] if not admins else [(THREE, [HEALTHY])]
        admins.append(admin)
        return admin

    watch = MetadataWatch("k:9092", ("fixes",), 0.01, time.sleep, admin_factory=build)
    thread = started(watch)
    watch.latest(wait_s=0.5)
    until(lambda: watch.state.metadata is not None, timeout=10)  # consume_until_stopped waits 1 s, then rebuilds
    assert admins[0].closed and len(admins) >= 2
    watch.stop()
    thread.join(5)
