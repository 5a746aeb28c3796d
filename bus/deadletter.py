"""Copying refused messages, bytes unchanged, to a dead-letter topic with the reason in headers."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient, KafkaProducer

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
