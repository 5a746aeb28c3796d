"""What every consumer does with the records of one poll: decode, apply, refuse; never stop.

:func:`take` is the per-poll step shared by the dashboard's feeds and the matcher. Each record goes
through its topic's total decoder (:mod:`fleet.decode`); the messages are applied as one batch; a
refusal goes to the caller's ``refuse``. If applying the batch raises, which only a bug can make
happen, the batch is applied again one record at a time, so that only the record that raises is
refused (``internal_error``, with the exception's class) and every other one is applied: the
appliers are idempotent for a record applied twice (they tell repeats by offset or by id). No
record is ever read twice, and nothing of the poll is lost.

:class:`Refusals` counts the refused records by (topic, reason) and keeps the log readable under a
flood: one line for the first refusal of each (topic, reason), then one line a minute with how many
more there were.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from fleet.decode import Refusal

log = logging.getLogger(__name__)
M = TypeVar("M")

REFUSAL_LOG_INTERVAL_S = 60.0


class Record(Protocol):
    """The parts of kafka-python's ``ConsumerRecord`` the intake reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def take(
    records: Iterable[Record],
    decoder: Callable[[bytes | None, bytes | None, float], Any],
    now: float,
    apply: Callable[[list[tuple[Any, Record]]], None],
    refuse: Callable[[Record, Refusal], None],
) -> int:
    """Decode every record (``decoder(key, value, now)``: a total decoder of fleet.decode), apply the messages
    as one batch, refuse the rest; return how many were applied."""
    messages: list[tuple[Any, Record]] = []
    for record in records:
        result = decoder(record.key, record.value, now)
        if type(result) is Refusal:
            refuse(record, result)
        else:
            messages.append((result, record))
    if not messages:
        return 0
    try:
        apply(messages)
    except Exception:  # noqa: BLE001 - find the record that raised; the others are applied all the same
        return _apply_one_by_one(messages, apply, refuse)
    return len(messages)


def _apply_one_by_one(
    messages: list[tuple[Any, Record]],
    apply: Callable[[list[tuple[Any, Record]]], None],
    refuse: Callable[[Record, Refusal], None],
) -> int:
    applied = 0
    for item in messages:
        try:
            apply([item])
        except Exception as e:  # noqa: BLE001
            refuse(item[1], Refusal.of_exception(e))
        else:
            applied += 1
    return applied


class Refusals:
    """Counts refused records by (topic, reason); logs them at most once per (topic, reason) per interval,
    with the count of the ones not logged."""

    def __init__(
        self, what: str, interval_s: float = REFUSAL_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._what = what
        self._interval_s = interval_s
        self._clock = clock
        self.counts: Counter[tuple[str, str]] = Counter()  # since start
        self._quiet_until: dict[tuple[str, str], float] = {}
        self._unlogged: dict[tuple[str, str], tuple[int, str]] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def note(self, record: Record, refusal: Refusal) -> None:
        """One refused record: counted, and logged unless its (topic, reason) was logged within the interval."""
        key = (record.topic, refusal.reason)
        self.counts[key] += 1
        now = self._clock()
        if now >= self._quiet_until.get(key, 0.0):
            self._flush(key)
            self._quiet_until[key] = now + self._interval_s
            log.warning(
                "%s refused a record of %s at %s/%d/%d: %s (%s)",
                self._what,
                record.topic,
                record.topic,
                record.partition,
                record.offset,
                refusal.reason,
                refusal.detail,
            )
        else:
            count, _ = self._unlogged.get(key, (0, ""))
            self._unlogged[key] = (count + 1, refusal.detail)

    def flush(self) -> None:
        """Log the counts of the refusals not logged whose quiet interval is over (call now and then)."""
        now = self._clock()
        for key in [k for k in self._unlogged if now >= self._quiet_until[k]]:
            self._flush(key)

    def _flush(self, key: tuple[str, str]) -> None:
        count, detail = self._unlogged.pop(key, (0, ""))
        if count:
            log.warning(
                "%s refused %d more records of %s as %s in the last %.0f s (the latest: %s)",
                self._what,
                count,
                key[0],
                key[1],
                self._interval_s,
                detail,
            )
