"""The matcher's phases (matcher/lifecycle.py): when it may match, commit, must resync, or stops. No Kafka."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from matcher.lifecycle import Lifecycle, Phase, Resync


@dataclass(frozen=True)
class Part:
    topic: str
    partition: int


def resync(targets: dict[Part, int], partitions: tuple[int, ...] = (0, 1)) -> Resync[Part]:
    return Resync([Part("req", p) for p in partitions], {}, targets, started=0.0)


def test_a_new_matcher_decides_nothing_until_a_resync_has_reached_its_targets():
    life: Lifecycle[Part] = Lifecycle()
    assert life.phase is Phase.RESYNC_WANTED and not life.matching
    life.resync_started(resync({Part("matches", 0): 10}))
    assert life.phase is Phase.RESYNCING and not life.matching
    assert not life.resync.reached(lambda tp: 9)
    assert life.resync.reached(lambda tp: 10)
    life.resync_finished({0, 1})
    assert life.matching and life.ready == {0, 1} and life.resync is None


def test_an_aborted_transaction_takes_the_partitions_back_and_wants_a_resync():
    life: Lifecycle[Part] = Lifecycle()
    life.resync_started(resync({}))
    life.resync_finished({0, 1})
    life.transaction_begun()
    life.aborted()
    assert (life.phase, life.ready, life.in_transaction) == (Phase.RESYNC_WANTED, set(), False)


def test_a_new_assignment_during_a_resync_starts_it_over():
    life: Lifecycle[Part] = Lifecycle()
    life.resync_started(resync({Part("matches", 0): 10}))
    life.want_resync()
    assert life.phase is Phase.RESYNC_WANTED and life.resync is None
    with pytest.raises(RuntimeError, match="no resync under way"):
        life.resync_finished({0})


def test_a_fenced_matcher_stays_fenced_whatever_happens_next():
    life: Lifecycle[Part] = Lifecycle()
    life.resync_started(resync({}))
    life.resync_finished({0})
    life.fence("another matcher runs with instance id 'm1'")
    for event in (life.want_resync, life.aborted):
        event()
        assert life.phase is Phase.FENCED and not life.matching
    life.resync_started(resync({}))
    assert life.phase is Phase.FENCED and life.fenced_reason.startswith("another matcher")


def test_revoked_partitions_are_no_longer_matched():
    life: Lifecycle[Part] = Lifecycle()
    life.resync_started(resync({}))
    life.resync_finished({0, 1, 2})
    life.drop([1])
    assert life.ready == {0, 2} and life.matching
