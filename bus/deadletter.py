"""Copying refused messages, bytes unchanged, to a dead-letter topic with the reason in headers."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from bus.clients import ensure_topics

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
# A refused message may be as large as the broker allows (about 1 MB), plus our headers.
DLQ_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
HEADER_REASON = "dlq.reason"
HEADER_DETAIL = "dlq.detail"
HEADER_SOURCE = "dlq.source"  # "topic/partition/offset" of the original


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def ensure_dead_letter_topic(admin: KafkaAdminClient, topic: str) -> str:
    name = dead_letter_topic(topic)
    ensure_topics(admin, {name: 1}, configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)})
    return name


def dead_letter_producer(bootstrap: str, **overrides) -> KafkaProducer:
    """A producer sized for the largest message a topic can hold, durable like any other."""
    config = {"acks": "all", "linger_ms": 50, "max_request_size": DLQ_MAX_MESSAGE_BYTES + 64 * 1024, **overrides}
    return KafkaProducer(bootstrap_servers=bootstrap.split(","), **config)


def send_dead_letter(
    producer: KafkaProducer,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    reason: str,
    detail: str,
):
    """Copy one record to ``<topic>.dlq``; its original headers are kept, ours appended."""
    dlq_headers = [
        *(headers or []),
        (HEADER_REASON, reason.encode()),
        (HEADER_DETAIL, detail.encode("utf-8", "replace")[:512]),
        (HEADER_SOURCE, f"{topic}/{partition}/{offset}".encode()),
    ]
    return producer.send(dead_letter_topic(topic), key=key, value=value, headers=dlq_headers)


class DeadLetterSink:
    """Copies refused records of a consumer to their ``<topic>.dlq``, opening the producer on first use.

    A failure (Kafka away) is counted and logged at 1, 10, 100 and every 1,000 failures, never
    raised: a consumer must not stop, or stall, because a copy could not be made.
    """

    def __init__(self, bootstrap: str, client_id: str, **producer_overrides) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._overrides = producer_overrides
        self._producer: KafkaProducer | None = None
        self._topics: set[str] = set()
        self.failures = 0

    def send(self, record, reason: str, detail: str) -> bool:
        """Copy one ``ConsumerRecord``; True once it is handed to the producer."""
        try:
            producer = self._producer_for(record.topic)
            future = send_dead_letter(
                producer, record.topic, record.partition, record.offset, record.key, record.value,
                record.headers, reason, detail,
            )  # fmt: skip
        except KafkaError as e:
            self._failed(e)
            return False
        future.add_errback(self._failed)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        if self._producer is not None:
            self._producer.close(timeout=timeout_s)
            self._producer = None

    def _producer_for(self, topic: str) -> KafkaProducer:
        if topic not in self._topics:
            admin = KafkaAdminClient(bootstrap_servers=self._bootstrap.split(","), **_admin_config(self._overrides))
            try:
                name = ensure_dead_letter_topic(admin, topic)
            finally:
                admin.close()
            self._topics.add(topic)
            log.info("dead-lettering refused messages of %s to %s", topic, name)
        if self._producer is None:
            self._producer = dead_letter_producer(self._bootstrap, client_id=self._client_id, **self._overrides)
        return self._producer

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
            log.warning("could not dead-letter a refused message (%s); %d so far", error, self.failures)


def _admin_config(producer_overrides: dict) -> dict:
    """The producer settings an admin client understands too (how long to wait for a bootstrap)."""
    return {k: v for k, v in producer_overrides.items() if k in ("bootstrap_timeout_ms", "reconnect_backoff_max_ms")}
