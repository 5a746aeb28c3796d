"""Building kafka-python clients against a broker that may not be up yet, and topics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Closable(Protocol):
    def close(self) -> None: ...


class RebalanceHandler(Protocol):
    """A process that takes its group consumer's partition changes (see :class:`ForwardRebalance`)."""

    def on_revoked(self, revoked: Any) -> None: ...

    def on_assigned(self, assigned: Any) -> None: ...

    def on_lost(self, lost: Any) -> None: ...


class ForwardRebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Hands a group consumer's rebalance callbacks (they run inside its ``poll()``) to ``handler``."""

    def __init__(self, handler: RebalanceHandler) -> None:
        self.handler = handler

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.handler.on_revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.handler.on_assigned(assigned)

    def on_partitions_lost(self, lost: Any) -> None:
        self.handler.on_lost(lost)


def opened(client: T | None, what: str) -> T:
    """``client``, or a clear error when the process reads it before ``start_up()`` opened it (a bug)."""
    if client is None:
        raise RuntimeError(f"the {what} is not open (start_up() opens it)")
    return client


C = TypeVar("C", bound=Closable)

# kafka-python waits 30 s by default before giving up on a bootstrap; a retry loop that
# logs every few seconds tells the user much sooner that the broker is not up yet.
BOOTSTRAP_TIMEOUT_MS = 5000
# After a broker restart, reconnect within a second instead of backing off up to kafka-python's 30 s: measured, a
# matcher with the default fetched nothing for the first 11 s after its single broker came back.
RECONNECT_BACKOFF_MAX_MS = 1000


def close_producer(producer: KafkaProducer, timeout_s: float, what: str) -> None:
    """Close ``producer`` within about ``timeout_s`` even when Kafka does not answer; never raises a KafkaError.

    kafka-python 3.0.12's ``close`` flushes first and raises when the flush times out, before it stops
    its I/O thread: that thread and its connections live on, and the producer's ``__del__`` closes (and
    fails) again, printing a traceback (tests/test_cluster_faults.py caught one in a matcher replacing the
    producer of a transaction whose coordinator was killed). The records still pending are failed instead.
    """
    try:
        producer.close(timeout=timeout_s)
    except KafkaError as e:
        log.info("%s did not close cleanly (%s: %s); failing what it had not sent", what, type(e).__name__, e)
        abandon(producer)
        try:
            producer.close(timeout=0)
        except KafkaError as again:
            log.warning("%s: its I/O thread did not stop (%s)", what, type(again).__name__)


def abandon(producer: KafkaProducer) -> None:
    """Fail every batch still pending (its errbacks see the error) and stop the producer's I/O thread.

    kafka-python's ``close(timeout)`` flushes first and raises while batches are pending, before it
    reaches its own force-close; force-closing the sender thread directly is what is left.
    """
    sender = producer._sender
    sender.force_close()
    sender.join(timeout=5)


def connect(
    factory: Callable[[], T],
    what: str,
    bootstrap: str,
    stop: threading.Event | None = None,
    max_backoff_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """Call ``factory`` until it returns a client; None if ``stop`` is set first.

    Each failed attempt logs one line naming the broker and the retry delay.
    """
    backoff = 0.5
    attempt = 1
    while stop is None or not stop.is_set():
        try:
            client = factory()
        except KafkaError as e:
            if stop is not None and stop.is_set():
                break  # asked to stop while this attempt waited for Kafka: no retry to announce
            log.warning(
                "%s: Kafka at %s not reachable yet (%s); retry %d in %.1f s",
                what,
                bootstrap,
                type(e).__name__,
                attempt,
                backoff,
            )
        else:
            if attempt > 1:
                log.info("%s: connected to Kafka at %s after %d attempts", what, bootstrap, attempt)
            else:
                log.info("%s: connected to Kafka at %s", what, bootstrap)
            return client
        _wait(stop, backoff, sleep)
        backoff = min(backoff * 2, max_backoff_s)
        attempt += 1
    return None


def consume_until_stopped(
    factory: Callable[[], C],
    consume: Callable[[C], None],
    what: str,
    bootstrap: str,
    stop: threading.Event,
    on_failure: Callable[[Exception], None] | None = None,
) -> None:
    """Build a client (retrying as :func:`connect` does) and run ``consume(client)`` until ``stop`` is set.

    A failure of ``consume`` is logged in one line and handed to ``on_failure``; the client is closed
    and, after a second, a new one is built: a broken client never ends a long-running process.
    """
    while not stop.is_set():
        client = connect(factory, what, bootstrap, stop)
        if client is None:
            return
        try:
            consume(client)
        except Exception as e:
            log.warning("%s failed (%s: %s); reconnecting", what, type(e).__name__, e)
            if on_failure is not None:
                on_failure(e)
            stop.wait(1.0)
        finally:
            client.close()


def _wait(stop: threading.Event | None, seconds: float, sleep: Callable[[float], None]) -> None:
    if stop is None:
        sleep(seconds)
    else:
        stop.wait(seconds)


def kafka_answers(bootstrap: str | list[str], timeout_s: float = 2.0) -> bool:
    """True when the cluster gives kafka-python a metadata response within timeout_s: one question,
    no retries, for callers that want to say "not up" rather than wait."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(",") if isinstance(bootstrap, str) else bootstrap,
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def replication_for(brokers: int) -> tuple[int, int]:
    """Replicas per partition and ``min.insync.replicas`` for a cluster of ``brokers``.

    Three copies survive one broker lost while another is being restarted; requiring two in sync
    makes an ``acks=all`` write durable on two machines before it is acknowledged, and still lets
    writes go on with one broker down.
    """
    replicas = max(1, min(3, brokers))
    return replicas, 2 if replicas >= 3 else 1


def ensure_topics(admin: KafkaAdminClient, topics: dict[str, int], configs: dict[str, str] | None = None) -> list[str]:
    """Create each missing topic with its partition count, replicated as :func:`replication_for` says
    for the brokers the cluster has registered; return the names created."""
    existing = set(admin.list_topics())
    replicas, min_isr = replication_for(len(admin.describe_cluster()["brokers"]))
    topic_configs = {"min.insync.replicas": str(min_isr), **(configs or {})}
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=replicas, topic_configs=topic_configs)
        for name, partitions in topics.items()
        if name not in existing
    ]
    created = []
    for topic in missing:
        try:
            admin.create_topics([topic], wait_for_metadata=True)
            created.append(topic.name)
            log.info(
                "created topic %s with %d partitions, %d replicas (min.insync.replicas %d)",
                topic.name,
                topic.num_partitions,
                replicas,
                min_isr,
            )
        except TopicAlreadyExistsError:
            pass  # another process won the race; the topic is there, which is all we need
    return created
