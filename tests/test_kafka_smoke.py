"""The broker the tests run against is a real Kafka: keyed messages go through it intact."""

import json
from collections import defaultdict

from kafka import KafkaConsumer, KafkaProducer


def test_thousand_keyed_messages_arrive_exactly_once_and_in_order_per_key(kafka_bootstrap, make_topic):
    topic = make_topic("smoke", partitions=4)
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
    )
    keys = [f"driver-{i}" for i in range(20)]
    for n in range(1000):
        key = keys[n % len(keys)]
        producer.send(topic, key=key.encode(), value=json.dumps({"key": key, "n": n}).encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10000,
    )
    received = defaultdict(list)
    partitions_of_key = defaultdict(set)
    for record in consumer:
        received[record.key.decode()].append(json.loads(record.value)["n"])
        partitions_of_key[record.key.decode()].add(record.partition)
        if sum(map(len, received.values())) == 1000:
            break
    consumer.close()

    assert sorted(n for ns in received.values() for n in ns) == list(range(1000))
    for key in keys:
        assert received[key] == sorted(received[key]), f"{key} arrived out of order"
        assert len(partitions_of_key[key]) == 1, f"{key} landed on several partitions"
    used = set().union(*partitions_of_key.values())
    assert len(used) > 1, "20 keys over 4 partitions should use more than one"
