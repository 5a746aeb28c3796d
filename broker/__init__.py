"""A local single-node Apache Kafka (KRaft) for the demo and the tests: `python -m broker`."""
