"""The matcher's phases, without I/O: when it may match, when it may commit, when it must resync or stop.

:class:`matcher.service.MatcherService` is the I/O shell around :class:`matcher.matching.Matcher` (what
to answer) and this :class:`Lifecycle` (when). A matcher is in one :class:`Phase` at a time:

- ``RESYNC_WANTED``: after a start, a partition assignment or an aborted transaction, it must read the
  committed offsets and rewind ``ride-matches`` before it decides anything;
- ``RESYNCING``: it reads ``ride-matches`` (and, the first time, the drivers' recent past) up to the
  targets of its :class:`Resync`; requests wait;
- ``MATCHING``: the ready request partitions are matched and transactions commit;
- ``FENCED``: another instance took its id; it commits nothing more and stops.

Whether a transaction is open is kept beside the phase: a failure aborts it and wants a resync.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

P = TypeVar("P")  # a partition as the shell names it (kafka-python's TopicPartition)


class Phase(Enum):
    RESYNC_WANTED = "resync wanted"
    RESYNCING = "resyncing"
    MATCHING = "matching"
    FENCED = "fenced"


@dataclass
class Resync(Generic[P]):
    """The positions the state consumer must reach before the request partitions are matched."""

    partitions: list[P]  # the request partitions that will be matched afterwards
    committed: dict[P, Any]  # their committed offsets (kafka-python's OffsetAndMetadata, or None)
    targets: dict[P, int]  # state partitions and the offset each must reach
    started: float  # monotonic

    def reached(self, position: Callable[[P], int]) -> bool:
        return all(position(tp) >= target for tp, target in self.targets.items())


@dataclass
class Lifecycle(Generic[P]):
    phase: Phase = Phase.RESYNC_WANTED
    resync: Resync[P] | None = None
    ready: set[int] = field(default_factory=set)  # request partitions being matched
    in_transaction: bool = False
    fenced_reason: str | None = None

    @property
    def matching(self) -> bool:
        """Requests may be answered, and answers committed."""
        return self.phase is Phase.MATCHING

    def want_resync(self) -> None:
        """Nothing is decided until every committed answer is known again (a fenced matcher stays fenced)."""
        if self.phase is not Phase.FENCED:
            self.phase, self.resync = Phase.RESYNC_WANTED, None

    def resync_started(self, resync: Resync[P]) -> None:
        if self.phase is Phase.RESYNC_WANTED:
            self.phase, self.resync = Phase.RESYNCING, resync

    def resync_finished(self, ready: set[int]) -> Resync[P]:
        """The resync reached its targets: the request partitions ``ready`` are matched from now on."""
        resync = self.resync
        if self.phase is not Phase.RESYNCING or resync is None:
            raise RuntimeError(f"no resync under way (phase {self.phase.value})")
        self.phase, self.resync, self.ready = Phase.MATCHING, None, set(ready)
        return resync

    def transaction_begun(self) -> None:
        self.in_transaction = True

    def transaction_ended(self) -> None:
        """Committed or aborted: the next answer opens a new one."""
        self.in_transaction = False

    def aborted(self) -> None:
        """The open transaction was aborted: what it decided is taken back, and the matcher resyncs."""
        self.in_transaction = False
        self.ready.clear()
        self.want_resync()

    def fence(self, reason: str) -> None:
        self.phase, self.fenced_reason = Phase.FENCED, reason
        self.resync = None
        self.ready.clear()

    def drop(self, partitions: list[int]) -> None:
        self.ready.difference_update(partitions)
