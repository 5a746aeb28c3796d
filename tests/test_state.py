"""The fleet state: newest fix per driver, trail, stale/drop/evict, and what changed since the last frame."""

from __future__ import annotations

import pytest

from fleet.schema import SEQ_RESTART_S, Fix
from fleet.state import FleetState

T = 1_800_000_000.0


def fix(driver_id: str, ts: float, lat: float = 40.0, lon: float = -73.0, **optional) -> Fix:
    return Fix(driver_id, lat, lon, ts, **optional)


def test_holds_the_newest_fix_with_its_partition_and_offset():
    state = FleetState()
    state.apply_batch([(fix("a", T, 40.1), 2, 10), (fix("a", T + 1, 40.2, status="on_trip", seq=7), 2, 11)], T + 1)
    driver = state.get("a")
    assert (driver.latitude, driver.timestamp, driver.status, driver.seq) == (40.2, T + 1, "on_trip", 7)
    assert (driver.partition, driver.offset) == (2, 11)
    assert len(state) == 1


def test_an_older_fix_does_not_move_the_marker_backwards():
    state = FleetState()
    state.apply(fix("a", T + 5, 40.5), 0, 1, T + 5)
    assert not state.apply(fix("a", T + 1, 40.1), 0, 2, T + 6)
    assert state.get("a").latitude == 40.5
    assert state.ignored_older == 1
    assert [p[0] for p in state.get("a").trail_points()] == [40.5]


def test_a_smaller_seq_never_replaces_a_newer_one_until_its_producer_has_clearly_restarted():
    state = FleetState()
    state.apply(fix("a", T, 40.0, seq=500), 0, 1, T)
    assert not state.apply(fix("a", T + 1, 40.1, seq=499), 0, 2, T + 1), "a late fix with an older seq"
    assert not state.apply(fix("a", T + SEQ_RESTART_S - 1, 40.2, seq=0), 0, 3, T + 9), "within the restart window"
    assert state.apply(fix("a", T + SEQ_RESTART_S, 40.3, seq=1), 0, 4, T + 10), "the producer restarted: seq from 0"
    assert state.apply(fix("a", T + SEQ_RESTART_S + 1, 40.4, seq=2), 0, 5, T + 11)
    assert state.get("a").latitude == 40.4


def test_a_fix_without_seq_is_ordered_by_its_timestamp_alone():
    state = FleetState()
    state.apply(fix("a", T, seq=9), 0, 1, T)
    assert state.apply(fix("a", T + 1), 0, 2, T + 1)
    assert state.apply(fix("a", T + 2, seq=3), 0, 3, T + 2), "nothing held to compare its seq with"


def test_the_same_record_read_again_adds_no_trail_point():
    state = FleetState()
    state.apply(fix("a", T), 0, 1, T)
    assert not state.apply(fix("a", T), 0, 1, T + 1)
    assert len(state.get("a").trail_points()) == 1


def test_trail_keeps_the_last_fifty_fixes_oldest_first():
    state = FleetState()
    state.apply_batch([(fix("a", T + i, 40 + i / 1000), 0, i) for i in range(80)], T + 80)
    trail = state.get("a").trail_points()
    assert len(trail) == 50
    assert trail[0] == [40.030, -73.0, T + 30]
    assert trail[-1] == [40.079, -73.0, T + 79]


def test_stale_by_fix_timestamp_and_counts_by_status():
    state = FleetState(stale_after_s=30)
    state.apply(fix("old", T, status="available"), 0, 0, T + 40)
    state.apply(fix("new", T + 35, status="on_trip"), 0, 1, T + 40)
    state.apply(fix("quiet", T + 35), 0, 2, T + 40)
    assert state.get("old").is_stale(T + 40, 30)
    assert not state.get("new").is_stale(T + 40, 30)
    assert state.counts(T + 40) == {
        "total": 3,
        "available": 1,
        "on_trip": 1,
        "offline": 0,
        "unknown": 1,
        "stale": 1,
    }


def test_sweep_drops_drivers_silent_longer_than_drop_after():
    state = FleetState(drop_after_s=600)
    state.apply(fix("a", T), 0, 0, T)
    state.apply(fix("b", T + 500), 0, 1, T + 500)
    state.take_changes()  # both announced to clients
    assert state.sweep(T + 601) == 1
    assert state.get("a") is None and state.get("b") is not None
    assert state.dropped == 1
    assert state.take_changes().gone == [0]


def test_a_driver_heard_again_is_not_dropped():
    state = FleetState(drop_after_s=600)
    state.apply(fix("a", T), 0, 0, T)
    state.apply(fix("b", T), 0, 1, T)
    state.apply(fix("a", T + 550), 0, 2, T + 550)
    assert state.sweep(T + 650) == 1
    assert [d.driver_id for d in state] == ["a"]


def test_past_max_drivers_the_longest_silent_is_evicted_and_counted():
    state = FleetState(max_drivers=3)
    for i, name in enumerate("abc"):
        state.apply(fix(name, T + i), 0, i, T + i)
    state.take_changes()
    state.apply(fix("a", T + 10), 0, 10, T + 10)  # a speaks again; b is now the longest silent
    state.apply(fix("d", T + 11), 0, 11, T + 11)
    assert sorted(d.driver_id for d in state) == ["a", "c", "d"]
    assert state.evicted == 1
    changes = state.take_changes()
    assert changes.gone == [1]
    assert [d.driver_id for d in changes.new] == ["d"]


def test_changes_list_new_drivers_once_and_then_only_what_changed():
    state = FleetState()
    state.apply_batch([(fix("a", T), 0, 0), (fix("b", T), 0, 1)], T)
    first = state.take_changes()
    assert [d.driver_id for d in first.new] == ["a", "b"]
    assert [d.driver_id for d in first.changed] == ["a", "b"]
    assert not state.take_changes()
    state.apply(fix("b", T + 1), 0, 2, T + 1)
    second = state.take_changes()
    assert second.new == [] and [d.driver_id for d in second.changed] == ["b"]


def test_a_driver_dropped_before_any_frame_is_never_announced_as_gone():
    state = FleetState(max_drivers=1)
    state.apply(fix("a", T), 0, 0, T)
    state.apply(fix("b", T + 1), 0, 1, T + 1)  # evicts a, which no client has heard of
    changes = state.take_changes()
    assert changes.gone == []
    assert [d.driver_id for d in changes.new] == ["b"]


def test_a_driver_in_a_snapshot_is_announced_as_gone_when_dropped():
    state = FleetState(drop_after_s=10)
    state.apply(fix("a", T), 0, 0, T)
    assert [d.driver_id for d in state.snapshot()] == ["a"]
    state.sweep(T + 11)
    assert state.take_changes().gone == [0]


def test_an_index_is_never_given_to_another_driver():
    state = FleetState(max_drivers=1)
    state.apply(fix("a", T), 0, 0, T)
    state.apply(fix("b", T), 0, 1, T)
    state.apply(fix("a", T + 1), 0, 2, T + 1)
    assert state.get("a").idx == 2


def test_refuses_a_bound_below_one():
    with pytest.raises(ValueError):
        FleetState(max_drivers=0)
