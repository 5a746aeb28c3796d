"""Copying refused records, bytes unchanged, to a dead-letter topic with where and why in headers.

A refused record of ``<topic>`` goes to ``<topic>.dlq`` with its key, value and headers as they
were, plus the headers of :func:`dead_letter_headers` (after Kafka Connect's ``__connect.errors.*``
and Spring Kafka's ``kafka_dlt-*``): the original topic, partition, offset and timestamp, the
reason and a sentence, and for ``internal_error`` the exception's class.

:class:`DeadLetterSink` is how a consumer that is not transactional copies them: ``send`` only puts
the record in a bounded buffer and returns; a worker thread of the sink's own connects, creates
the dead-letter topics and sends. So a dead-letter topic that cannot be written costs the consumer
nothing: the copies are counted as failures (and reported), never waited for. The matcher copies
its refused requests inside its transactions instead (``matcher/service.py``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS, RECONNECT_BACKOFF_MAX_MS, close_producer, connect, ensure_topics
from bus.intake import Record
from fleet.decode import Refusal

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
# A refused message may be as large as the broker allows (about 1 MB), plus our headers.
DLQ_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
HEADER_TOPIC = "dlq.topic"
HEADER_PARTITION = "dlq.partition"
HEADER_OFFSET = "dlq.offset"
HEADER_TIMESTAMP = "dlq.timestamp"  # the original record's timestamp, epoch ms
HEADER_REASON = "dlq.reason"
HEADER_DETAIL = "dlq.detail"
HEADER_EXCEPTION = "dlq.exception"  # internal_error only: the exception's module and class
MAX_DETAIL_BYTES = 512
# Copies on their way (queued for the worker or in the producer, not yet acknowledged); past it a
# new copy is counted as failed, not kept: memory stays bounded while Kafka is away.
MAX_PENDING = 10_000
# How long the worker's send waits for metadata before counting the copy as failed, and how long a
# copy may take to be acknowledged.
SEND_MAX_BLOCK_MS = 5000
# The worker hands what is queued to the producer this often, not once per refused record: under a flood
# of bad records every wake-up and every small produce request is CPU the consumer's process pays for.
DRAIN_INTERVAL_S = 0.25
LINGER_MS = 100
DELIVERY_TIMEOUT_MS = 30_000
REQUEST_TIMEOUT_MS = 10_000  # kafka-python wants delivery >= linger + request timeout


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def ensure_dead_letter_topic(admin: KafkaAdminClient, topic: str) -> str:
    name = dead_letter_topic(topic)
    ensure_topics(admin, {name: 1}, configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)})
    return name


def dead_letter_headers(record: Record, refusal: Refusal) -> list[tuple[str, bytes]]:
    """The record's own headers, then ours."""
    headers = [
        *(record.headers or []),
        (HEADER_TOPIC, record.topic.encode("utf-8")),
        (HEADER_PARTITION, str(record.partition).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
        (HEADER_TIMESTAMP, str(record.timestamp).encode()),
        (HEADER_REASON, refusal.reason.encode()),
        (HEADER_DETAIL, refusal.detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]),
    ]
    if refusal.exception is not None:
        headers.append((HEADER_EXCEPTION, refusal.exception.encode("utf-8", "replace")))
    return headers


def send_dead_letter(producer: KafkaProducer, record: Record, refusal: Refusal) -> Any:
    """Hand one record's copy to ``producer``; returns kafka-python's future."""
    return producer.send(
        dead_letter_topic(record.topic),
        key=record.key,
        value=record.value,
        headers=dead_letter_headers(record, refusal),
    )


@dataclass(frozen=True)
class DeadLetterStats:
    """What a sink did since it started: copies acknowledged by Kafka, copies that failed (could not be
    queued, sent or acknowledged), copies still on their way, and the latest failure."""

    sent: int = 0
    failed: int = 0
    pending: int = 0
    error: str | None = None


class DeadLetterSink:
    """Copies refused records of a consumer to their ``<topic>.dlq`` from a worker thread; never blocks."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        max_pending: int = MAX_PENDING,
        start_thread: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._max_pending = max_pending
        self._start_thread = start_thread or _daemon_thread
        self._queue: deque[tuple[Record, Refusal]] = deque()
        self._stop = threading.Event()
        self._started = False
        self._finished = threading.Event()
        self._topics: set[str] = set()
        self._accepted = 0
        self._sent = 0
        self._failed = 0
        self._dropped = 0  # never accepted: the buffer was full
        self._error: str | None = None

    @property
    def stats(self) -> DeadLetterStats:
        pending = self._accepted - self._sent - self._failed
        return DeadLetterStats(self._sent, self._failed + self._dropped, pending, self._error)

    def send(self, record: Record, refusal: Refusal) -> bool:
        """Queue a copy of ``record``; False (counted as failed) when the buffer is full."""
        if self._accepted - self._sent - self._failed >= self._max_pending:
            self._dropped += 1
            self._note_failure(f"{self._max_pending} copies already wait for Kafka")
            return False
        self._accepted += 1
        self._queue.append((record, refusal))
        if not self._started:
            self._started = True
            self._start_thread(self._run)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout_s``), then stop the worker."""
        self._stop.set()
        if self._started:
            self._finished.wait(timeout_s)

    # ---- the worker

    def _run(self) -> None:
        producer = None
        try:
            producer = connect(self._new_producer, f"dead letters ({self._client_id})", self._bootstrap, self._stop)
            while producer is not None:
                self._drain(producer)
                if self._stop.is_set():
                    break
                self._stop.wait(DRAIN_INTERVAL_S)
        except Exception as e:  # noqa: BLE001 - the worker must never take the consumer with it
            log.exception("dead-letter worker failed")
            self._note_failure(f"{type(e).__name__}: {e}")
        finally:
            if producer is not None:
                close_producer(producer, 2, "the dead-letter producer")
            self._fail_all_queued("the dead-letter worker stopped")
            self._finished.set()

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self._bootstrap.split(","),
            client_id=self._client_id,
            acks="all",
            linger_ms=LINGER_MS,
            max_request_size=DLQ_MAX_MESSAGE_BYTES + 64 * 1024,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            max_block_ms=SEND_MAX_BLOCK_MS,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )

    def _drain(self, producer: KafkaProducer) -> None:
        while self._queue:
            record, refusal = self._queue.popleft()
            self._ensure_topic(record.topic)
            try:
                future = send_dead_letter(producer, record, refusal)
            except KafkaError as e:
                self._fail(f"{type(e).__name__}: {e}")
                continue
            future.add_callback(self._on_sent)
            future.add_errback(self._on_failed)

    def _ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        self._topics.add(topic)  # once: if it fails, the sends tell whether the topic can be written
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap.split(","),
                client_id=self._client_id,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            )
            try:
                name = ensure_dead_letter_topic(admin, topic)
            finally:
                # kafka-python 3.0.12's admin close() closes its sockets before it stops its IO thread; under
                # eventlet (the dashboard) that thread then dies in select() with IOClosed and prints a
                # traceback. Stopping the IO loop first closes it quietly (it is idempotent in close()).
                admin._net.stop()
                admin.close()
        except KafkaError as e:
            log.warning("could not create %s (%s); sending to it anyway", dead_letter_topic(topic), e)
        else:
            log.info("dead-lettering refused records of %s to %s", topic, name)

    def _on_sent(self, _metadata: Any) -> None:
        self._sent += 1

    def _on_failed(self, error: BaseException) -> None:
        self._fail(f"{type(error).__name__}: {error}")

    def _fail(self, error: str) -> None:
        """An accepted copy that will never reach its dead-letter topic."""
        self._failed += 1
        self._note_failure(error)

    def _note_failure(self, error: str) -> None:
        self._error = error
        failures = self._failed + self._dropped
        if failures in (1, 10, 100) or failures % 1000 == 0:
            log.warning("could not dead-letter a refused record (%s); %d so far", error, failures)

    def _fail_all_queued(self, why: str) -> None:
        while self._queue:
            self._queue.popleft()
            self._fail(why)


def _daemon_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, name="dead-letters", daemon=True)
    thread.start()
    return thread
