"""Closing kafka-python clients while Kafka does not answer (bus/clients.py), against a real broker.

The broker is frozen (SIGSTOP) rather than stopped: its connections stay open and nothing answers them,
as when a broker hangs or the network drops packets, which is what makes kafka-python's own close raise.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import MemberToRemove, NewTopic

from broker.local import LocalBroker
from bus.clients import close_producer


@contextmanager
def frozen(broker: LocalBroker) -> Iterator[None]:
    pid = broker.running_pid()
    assert pid is not None, "the private broker runs"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextmanager
def unraisable_exceptions() -> Iterator[list[BaseException]]:
    """What Python would print as "Exception ignored in ..." (a ``__del__`` that raised), collected."""
    seen: list[BaseException] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_value)
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


def test_a_producer_closed_while_its_broker_does_not_answer_fails_what_it_had_not_sent_and_stops(
    private_broker: LocalBroker, caplog
):
    bootstrap, topic = private_broker.bootstrap, "close-unanswered"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.partitions_for(topic)
    caplog.set_level(logging.INFO, logger="bus.clients")

    with frozen(private_broker):
        pending = producer.send(topic, b"a fix nobody acknowledges")
        started = time.monotonic()
        close_producer(producer, 1, "the test's producer")
        took = time.monotonic() - started
    sender = producer._sender

    assert pending.failed(), "the record Kafka never acknowledged is failed, so its errback counts it"
    assert not sender.is_alive(), "the producer's I/O thread stopped"
    assert "the test's producer did not close cleanly (KafkaTimeoutError" in caplog.text
    assert took < 15, f"closing took {took:.1f} s"
    with unraisable_exceptions() as seen:
        del producer
        gc.collect()
    assert seen == [], "dropping the closed producer closes nothing again"


def test_a_static_member_whose_membership_is_removed_joins_again_and_takes_every_partition(kafka_bootstrap, make_topic):
    """The remedy of matcher/service.py's ``rejoin_if_alone``: a static member stuck without partitions removes
    its own membership by instance id, and kafka-python's next heartbeat makes it join an empty group again."""
    topic = make_topic("static", partitions=3)
    group = f"static-{topic}"
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, group_instance_id="m1", enable_auto_commit=False
    )
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        consumer.subscribe([topic])
        assert poll_until_assigned(consumer) == {0, 1, 2}
        removed = admin.remove_group_members(group, [MemberToRemove(group_instance_id="m1")])
        assert [error.__name__ for error in removed.values()] == ["NoError"]
        assert admin.describe_groups([group])[group]["members"] == [], "the group is empty once the member is removed"
        assert poll_until_member(consumer, admin, group) == ["m1"]
        assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2}
    finally:
        consumer.close()
        admin.close()


def poll_until_assigned(consumer: KafkaConsumer) -> set[int]:
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
    return {tp.partition for tp in consumer.assignment()}


def poll_until_member(consumer: KafkaConsumer, admin: KafkaAdminClient, group: str) -> list[str]:
    deadline = time.monotonic() + 30
    members: list[str] = []
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
        members = [m["group_instance_id"] for m in admin.describe_groups([group])[group]["members"]]
        if members and consumer.assignment():
            break
    return members
