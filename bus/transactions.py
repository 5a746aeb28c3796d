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

import logging
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import FencedInstanceIdError, KafkaError, KafkaTimeoutError, ProducerFencedError

from bus.clients import BOOTSTRAP_TIMEOUT_MS, RECONNECT_BACKOFF_MAX_MS, close_producer
from bus.deadletter import DLQ_MAX_MESSAGE_BYTES
from fleet.settings import bootstrap_list

log = logging.getLogger(__name__)

# An open transaction of a process that died blocks read_committed readers of what it writes until it is
# aborted: by the restarted process at once (same transactional id), or by the broker after this long.
TRANSACTION_TIMEOUT_MS = 10_000
# kafka-python retries the first request of a transaction with retry_backoff_ms while the broker
# still writes the previous commit's markers; at the default 100 ms every transaction takes
# 200 ms or more, at 20 ms (what the Java client uses for that case) about 40 ms.
TRANSACTION_RETRY_BACKOFF_MS = 20
MAX_BLOCK_MS = 10_000
# How long a commit or an abort may wait for the transaction coordinator: a new coordinator is found within
# seconds of a broker's death, so a longer silence means the answer was lost.
TRANSACTION_WAIT_S = MAX_BLOCK_MS / 1000


class TransactionTimedOut(KafkaTimeoutError):  # type: ignore[misc]  # kafka-python is untyped
    """The transaction coordinator did not answer in time; the producer's transaction state is unknown."""


def open_producer(bootstrap_servers: str, transactional_id: str) -> KafkaProducer:
    """A transactional producer, its transactions initialised (which aborts whatever a previous run with this
    transactional id left open); raises a KafkaError when Kafka does not answer. It may also copy records to
    dead-letter topics in its transactions, hence its request size."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_list(bootstrap_servers),
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,
        linger_ms=5,
        max_block_ms=MAX_BLOCK_MS,
        max_request_size=DLQ_MAX_MESSAGE_BYTES + 64 * 1024,
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )
    try:
        producer.init_transactions()
    except KafkaError:
        producer.close(timeout=1)
        raise
    return producer


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


def abort_or_replace(
    producer: KafkaProducer, coordinator_lost: bool, replace: Callable[[str], None], timeout_s: float
) -> KafkaError | None:
    """Settle the open transaction: abort it, or, when its coordinator did not answer (``coordinator_lost``:
    an abort would wait in vain too) or the abort fails, ``replace(why)`` starts a new producer with the same
    transactional id, whose ``init_transactions`` completes or aborts what was left open. Returns the error of
    an abort refused because another instance took this one's id (the caller stops), else None."""
    if coordinator_lost:
        replace("the transaction coordinator did not answer")
        return None
    try:
        abort(producer, timeout_s)
    except KafkaError as e:
        if is_fenced(e, producer):
            return e
        replace(f"abort failed ({type(e).__name__})")
    return None


def discard(producer: KafkaProducer) -> None:
    """Close a producer being replaced; it is dropped whatever happens (measured: its flush times out when
    the broker just came back)."""
    close_producer(producer, 1, "the old producer")
