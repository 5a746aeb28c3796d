"""Who gets which event at a tick (dashboard/audience.py): the browsers' bookkeeping, in microseconds, no I/O."""

from __future__ import annotations

from dashboard.audience import RIDERS_MIN_INTERVAL_S, SNAPSHOT_MIN_INTERVAL_S, Audience


def test_a_new_client_starts_with_a_snapshot_then_gets_frames():
    audience = Audience()
    audience.add("a")
    first = audience.plan({"a"}, now=0.0, frame=True, stats=False)
    assert (first.positions, first.snapshot) == ([], ["a"]), "no frame before the snapshot it would patch"
    second = audience.plan({"a"}, now=0.1, frame=True, stats=False)
    assert (second.positions, second.snapshot) == (["a"], [])


def test_a_client_that_is_not_ready_skips_the_frame_and_starts_over_once_it_has_drained():
    audience = Audience()
    audience.add("slow")
    audience.plan({"slow"}, now=0.0, frame=True, stats=False)
    busy = audience.plan(set(), now=SNAPSHOT_MIN_INTERVAL_S, frame=True, stats=False)
    assert (busy.positions, busy.snapshot, busy.skipped) == ([], [], 1)
    drained = audience.plan({"slow"}, now=SNAPSHOT_MIN_INTERVAL_S + 0.1, frame=True, stats=False)
    assert (drained.positions, drained.snapshot) == ([], ["slow"])


def test_resync_every_tick_costs_one_snapshot_a_second_and_no_frames_while_it_waits():
    audience = Audience()
    audience.add("flooder")
    snapshots = 0
    for tick in range(30):  # three seconds of 100 ms ticks
        audience.request_snapshot("flooder")
        delivery = audience.plan({"flooder"}, now=tick * 0.1, frame=True, stats=False)
        snapshots += len(delivery.snapshot)
        assert delivery.positions == [], "a client waiting for a snapshot gets no frame it would throw away"
    assert snapshots == 3


def test_riders_go_with_every_snapshot_once_a_second_and_soon_after_a_change():
    audience = Audience()
    audience.add("a")
    assert audience.plan({"a"}, 0.0, frame=False, stats=False, riders_version=0).riders == ["a"], "with the snapshot"
    assert audience.plan({"a"}, 0.1, frame=False, stats=False, riders_version=0).riders == [], "nothing new"
    assert audience.plan({"a"}, 0.2, frame=False, stats=True, riders_version=0).riders == ["a"], "the counts age"
    changed_soon = audience.plan({"a"}, 0.2 + RIDERS_MIN_INTERVAL_S / 2, frame=False, stats=False, riders_version=1)
    assert changed_soon.riders == [], "a change right after an event waits a little"
    later = audience.plan({"a"}, 0.2 + RIDERS_MIN_INTERVAL_S, frame=False, stats=False, riders_version=1)
    assert later.riders == ["a"]


def test_a_busy_client_keeps_its_riders_due_until_it_has_drained():
    audience = Audience()
    audience.add("a")
    audience.add("busy")
    delivery = audience.plan({"a"}, 0.0, frame=False, stats=True, riders_version=0)
    assert delivery.riders == ["a"] and delivery.stats == ["a"]
    assert audience.plan({"a", "busy"}, 0.1, frame=False, stats=False, riders_version=0).riders == ["busy"]


def test_stats_go_to_the_ready_clients_only_and_a_removed_client_gets_nothing():
    audience = Audience()
    audience.add("a")
    audience.add("b")
    audience.remove("b")
    assert audience.plan({"a", "b"}, 0.0, frame=True, stats=True).stats == ["a"]
    assert len(audience) == 1
