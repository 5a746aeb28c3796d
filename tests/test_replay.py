"""Replay's pure core (fleet/replay.py) and the live audience's hold (dashboard/audience.py): no broker, no I/O."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.audience import Audience
from fleet.replay import (
    MAX_REPLAY_ID,
    SPEEDS,
    Control,
    Lookback,
    Playback,
    ReplayClock,
    RidePlayback,
    Seek,
    bucket_edges,
    first_timestamp,
    histogram,
    newest_per_key,
    parse_control,
    parse_seek,
    seek_offsets,
)
from fleet.rides import MATCHED, RideMatch, RideRequest

NOW = 1_795_645_154.0


@dataclass(frozen=True)
class R:
    """A consumer record as a replay reads it."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None = b"drv-1"
    value: bytes | None = None


# ---- the replay clock


def test_the_clock_runs_at_its_speed_from_where_it_was_set():
    clock = ReplayClock(1000.0, at_mono=50.0, speed=4)
    assert clock.now(50.0) == 1000.0
    assert clock.now(52.5) == 1010.0, "2.5 real seconds at 4x are 10 replayed seconds"


def test_a_paused_clock_holds_still_and_plays_on_from_there_at_a_new_speed():
    clock = ReplayClock(1000.0, at_mono=0.0, speed=2)
    clock.set(3.0, speed=2, playing=False)
    assert clock.now(3.0) == clock.now(100.0) == 1006.0
    clock.set(100.0, speed=60, playing=True)
    assert clock.now(101.0) == 1066.0


def test_the_clock_never_runs_past_the_present():
    clock = ReplayClock(NOW - 10, at_mono=0.0, speed=60)
    assert clock.now(1.0, ceiling=NOW) == NOW


# ---- where a seek starts


def test_a_time_past_a_partitions_last_record_starts_at_its_live_end_and_offsets_stay_in_the_partition():
    found = {0: 120, 1: None, 2: 3, 3: 999}
    starts = seek_offsets(found, beginnings={0: 0, 1: 0, 2: 10, 3: 0}, ends={0: 500, 1: 80, 2: 40, 3: 100})
    assert starts == {0: 120, 1: 80, 2: 10, 3: 100}


def test_a_partition_without_records_starts_at_its_end():
    assert seek_offsets({0: None}, beginnings={0: 0}, ends={0: 0}) == {0: 0}


# ---- the fleet at the sought time


def test_lookback_keeps_each_drivers_last_record_at_or_before_t_within_the_window():
    t = 1000.0
    lookback = Lookback(t, window_s=30, split={0: 5})
    records = [
        R(0, 0, 960_000, b"a"),  # before the window: a driver silent 40 s is not on the map
        R(0, 1, 990_000, b"b"),
        R(0, 2, 999_000, b"b"),
        R(0, 3, 1_000_000, b"c"),  # exactly at t: at or before t
        R(0, 4, 1_000_500, b"b"),  # after t, though before the split: played later
    ]
    kept = [lookback.take(r) for r in records]
    assert kept == [True, True, True, True, False]
    assert [(r.key, r.offset) for r in lookback.records()] == [(b"b", 2), (b"c", 3)]
    assert lookback.too_old == 1


def test_lookback_keeps_keyless_records_all_and_ends_when_every_partition_reached_its_split():
    lookback = Lookback(1000.0, window_s=30, split={0: 2, 1: 0})
    lookback.take(R(0, 0, 995_000, None))
    lookback.take(R(0, 1, 996_000, None))
    assert len(lookback.records()) == 2
    assert not lookback.done({0: 1, 1: 0})
    assert lookback.done({0: 2, 1: 0}), "a partition with nothing in the window is done at once"
    assert lookback.covers(0, 1) and not lookback.covers(0, 2) and not lookback.covers(1, 0)


def test_a_record_timestamped_later_than_a_newer_offset_of_the_same_key_wins():
    lookback = Lookback(1000.0, window_s=30, split={0: 2})
    lookback.take(R(0, 0, 999_000, b"a"))
    lookback.take(R(0, 1, 990_000, b"a"))  # a producer clock that went back: older than the one held
    assert [r.offset for r in lookback.records()] == [0]


# ---- playing on


def test_playback_hands_out_records_as_the_clock_reaches_them_and_drops_backwards_ones():
    playback = Playback(1000.0)
    for r in [R(0, 10, 1_000_100), R(0, 11, 999_000), R(0, 12, 1_001_000), R(1, 3, 1_000_050), R(1, 4, 1_002_000)]:
        playback.add(r)
    assert playback.backwards == 1, "timestamped before the sought time, after the sought offset"
    assert playback.buffered == 4
    assert [(r.partition, r.offset) for r in playback.due(1000.2)] == [(0, 10), (1, 3)]
    assert playback.horizon(0) == 1001.0 and playback.horizon(1) == 1002.0 and playback.horizon(5) is None
    assert [r.offset for r in playback.due(1001.5)] == [12]
    assert playback.buffered == 1


def test_a_record_a_little_behind_the_one_before_it_plays_with_it():
    playback = Playback(1000.0)
    playback.add(R(0, 1, 1_002_000))
    playback.add(R(0, 2, 1_001_000))  # behind its predecessor, after the sought time: late, not lost
    assert playback.due(1001.5) == []
    assert [r.offset for r in playback.due(1002.0)] == [1, 2]


def test_of_the_records_due_at_a_tick_only_each_keys_newest_is_decoded():
    due = [R(0, 1, 1000, b"a"), R(0, 2, 2000, b"b"), R(0, 3, 3000, b"a"), R(0, 4, 2500, b"a"), R(1, 1, 10, None)]
    assert [(r.key, r.offset) for r in newest_per_key(due)] == [(b"a", 3), (b"b", 2), (None, 1)]


# ---- the time bar's histogram


def test_histogram_sums_offsets_between_bucket_edges_over_partitions():
    ends = {0: 100, 1: 50}
    at_edges = [{0: 0, 1: 0}, {0: 40, 1: 10}, {0: 90, 1: None}]  # None: past partition 1's last record
    assert histogram(at_edges, ends) == [40 + 10, 50 + 40]


def test_histogram_never_counts_a_bucket_negative_when_the_time_index_runs_backwards():
    assert histogram([{0: 10}, {0: 5}, {0: 20}], {0: 30}) == [0, 10]


def test_bucket_edges_span_the_range_and_the_first_timestamp_is_the_earliest():
    edges = bucket_edges(0.0, 60.0, 6)
    assert len(edges) == 7 and edges[0] == 0.0 and edges[-1] == 60.0
    assert first_timestamp([(0, 5000), None, (3, 2000)]) == 2.0
    assert first_timestamp([None, None]) is None


# ---- what a client may ask


def test_the_documented_payloads_parse():
    seek = parse_seek([{"id": 3, "t": NOW - 60, "speed": 4, "playing": True}], NOW)
    assert seek == Seek(3, NOW - 60, 4, True)
    assert parse_seek([{"id": 3, "t": NOW + 1.0, "speed": 60.0, "playing": False}], NOW) == Seek(3, NOW, 60, False)
    assert parse_control([{"id": 4, "speed": 16, "playing": False}]) == Control(4, 16, False)


def test_anything_else_is_refused():
    good = {"id": 1, "t": NOW - 5, "speed": 2, "playing": True}
    refused = [
        [],
        [good, good],
        [json.dumps(good)],
        [{**good, "extra": 1}],
        [{k: v for k, v in good.items() if k != "speed"}],
        [{**good, "speed": 3}],
        [{**good, "speed": True}],
        [{**good, "id": -1}],
        [{**good, "id": MAX_REPLAY_ID + 1}],
        [{**good, "id": 1.0}],
        [{**good, "t": math.nan}],
        [{**good, "t": math.inf}],
        [{**good, "t": NOW + 3600}],
        [{**good, "t": 0}],
        [{**good, "t": "1795645100"}],
        [{**good, "playing": 1}],
    ]
    for args in refused:
        assert parse_seek(args, NOW) is None, args


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(-5, 2**40), st.floats(), st.booleans()),
        "t": st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.just(NOW - 30)),
        "speed": st.one_of(st.sampled_from(SPEEDS), st.floats(), st.integers(-3, 100), st.booleans()),
        "playing": st.one_of(st.booleans(), st.integers(0, 1), st.none()),
    }
)


@settings(max_examples=500)
@given(st.lists(st.one_of(json_values, near_valid), max_size=3))
def test_any_payload_is_parsed_into_a_valid_request_or_refused_and_never_raises(args):
    seek = parse_seek(args, NOW)
    if seek is not None:
        assert 0 <= seek.id <= MAX_REPLAY_ID and seek.speed in SPEEDS and type(seek.playing) is bool
        assert math.isfinite(seek.t) and seek.t <= NOW
    control = parse_control(args)
    if control is not None:
        assert 0 <= control.id <= MAX_REPLAY_ID and control.speed in SPEEDS


# ---- the live audience while a client replays


def test_a_replaying_client_gets_no_live_frame_snapshot_or_riders_then_a_snapshot_when_back_live():
    audience = Audience()
    audience.add("viewer")
    audience.add("replayer")
    audience.plan({"viewer", "replayer"}, now=0.0, frame=False, stats=False, riders_version=1)
    audience.hold("replayer")
    held = audience.plan({"viewer", "replayer"}, now=5.0, frame=True, stats=True, riders_version=2)
    assert held.positions == ["viewer"] and held.skipped == 0
    assert "replayer" not in held.riders and "replayer" in held.stats
    audience.release("replayer")
    back = audience.plan({"viewer", "replayer"}, now=5.1, frame=True, stats=False, riders_version=2)
    assert back.snapshot == ["replayer"] and "replayer" in back.riders and back.positions == ["viewer"]


def test_ride_messages_are_applied_in_timestamp_order_across_topics_and_none_is_dropped_past_the_bound():
    playback = RidePlayback(max_buffered=2)
    answer = RideMatch("r1", "rider-1", MATCHED, 1_000.0, 990.0, 40.7, -74.0, "d1", 500.0, 60, 40.7, -74.0)
    playback.add(1_000_000, answer)  # read first (another topic), timestamped after its request
    assert not playback.full
    playback.add(990_000, RideRequest("r1", "rider-1", 40.7, -74.0, 990.0))
    playback.add(1_010_000, RideRequest("r2", "rider-2", 40.7, -74.0, 1_010.0))
    assert playback.full and len(playback) == 3, "full stops reading ahead; what was read is kept"
    assert playback.apply_due(1_000.0) == 2
    assert [(r.request_id, r.state) for r in playback.riders] == [("r1", "en_route")]
    assert playback.apply_due(1_010.0) == 1 and len(playback.riders) == 2
