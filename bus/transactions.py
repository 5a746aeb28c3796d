"""kafka-python's transactional calls, bounded in time.

kafka-python 3.0.12's ``send_offsets_to_transaction``, ``commit_transaction`` and ``abort_transaction``
wait for the transaction coordinator's answer without a timeout. When the broker that coordinates the
transaction is killed while a request is in flight, that answer never comes: the matcher waited until it
was stopped (96 s) in tests/test_cluster_faults.py. The Java client bounds the same calls by
``max.block.ms`` and raises a TimeoutException; these functions do the same, through the producer's
transaction manager (kafka-python's own public methods are these three lines with an unbounded wait).
A caller that gets :class:`TransactionTimedOut` must not trust the producer again: it closes it and
starts a new one, whose ``init_transactions`` finishes or aborts what was left open.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer
from kafka.errors import FencedInstanceIdError, KafkaTimeoutError, ProducerFencedError


class TransactionTimedOut(KafkaTimeoutError):  # type: ignore[misc]  # kafka-python is untyped
    """The transaction coordinator did not answer in time; the producer's transaction state is unknown."""


def send_offsets(producer: KafkaProducer, offsets: dict[Any, Any], group_metadata: Any, timeout_s: float) -> None:
    """Add consumer offsets to the open transaction (``send_offsets_to_transaction``), within ``timeout_s``."""
    manager = producer._transaction_manager
    _wait(producer, manager.send_offsets_to_transaction(offsets, group_metadata), "adding offsets", timeout_s)


def commit(producer: KafkaProducer, timeout_s: float) -> None:
    """``commit_transaction`` within ``timeout_s``."""
    _wait(producer, producer._transaction_manager.begin_commit(), "commit", timeout_s)


def abort(producer: KafkaProducer, timeout_s: float) -> None:
    """``abort_transaction`` within ``timeout_s``."""
    _wait(producer, producer._transaction_manager.begin_abort(), "abort", timeout_s)


def _wait(producer: KafkaProducer, result: Any, what: str, timeout_s: float) -> None:
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):  # raises the coordinator's error, if it answered one
        raise TransactionTimedOut(f"the transaction coordinator did not answer the {what} within {timeout_s:.0f} s")


def is_fenced(error: BaseException, producer: KafkaProducer | None = None) -> bool:
    """Another producer or group member took this instance's transactional id or group instance id.

    kafka-python raises the fencing error once, then a plain KafkaError for every later transactional
    call; the typed error stays the transaction manager's ``last_error``, so that is looked at too.
    """
    manager = getattr(producer, "_transaction_manager", None)
    candidates = (error, error.__cause__, *error.args, getattr(manager, "last_error", None))
    return any(isinstance(c, (ProducerFencedError, FencedInstanceIdError)) for c in candidates)
