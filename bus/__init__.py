"""What every process shares around Kafka: client construction that waits for a broker,
topic creation, the dead-letter producer, logging set-up and clean shutdown on signals."""
