"""Driver tracks without Kafka: the window parser (with Hypothesis), speeds, stops, caps, and the exported file."""

from __future__ import annotations

import html
import math
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from bus.lean_fetch import LeanRecords
from bus.partitioning import key_partition
from dashboard.export import Assets, fleet_file, markup_text, runs_by_speed, speed_class, track_file
from dashboard.tracks import PAST_END_RECORDS, ScanPlan, ScanResult, _scan, driver_id_from_path
from fleet.geo import AREAS, destination, haversine_m
from fleet.schema import Fix
from fleet.track import (
    DEFAULT_WINDOW_S,
    MAX_WINDOW_S,
    TrackBuilder,
    Window,
    WindowError,
    compact_utc,
    find_stops,
    in_time_order,
    parse_time,
    parse_window,
    safe_file_part,
    segment_speeds,
    tick_times,
)

NOW = 1_795_645_154.0
HOSTILE = "</script><script>alert(`${document.cookie}`)</script>{{7*7}}\\"
OFFLINE = Assets(inline=True, tile_url="none", tile_attribution="")


# ---- the window


def test_no_window_is_the_last_15_minutes():
    assert parse_window(None, None, NOW) == Window(NOW - DEFAULT_WINDOW_S, NOW)
    assert parse_window("", "", NOW) == Window(NOW - DEFAULT_WINDOW_S, NOW), "empty fields count as absent"


def test_only_to_means_the_15_minutes_before_it():
    assert parse_window(None, "1795600000", NOW) == Window(1795600000 - DEFAULT_WINDOW_S, 1795600000)


def test_epoch_seconds_and_iso_8601_with_any_zone_name_the_same_moments():
    window = parse_window("2026-12-01T18:00:00Z", "2026-12-01T19:30:00+01:00", NOW)
    start = datetime(2026, 12, 1, 18, tzinfo=timezone.utc).timestamp()
    assert window == Window(start, start + 1800)
    assert parse_window(str(start), f"{start + 1800:.3f}", NOW) == window
    assert parse_time("2026-12-01T13:00:00.250-05:00", "from") == start + 0.25


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("1795600100", "1795600000", "before"),  # from after to
        ("1795600000", "1795600000", "before"),  # empty window
        ("1795500000", "1795600000", "at most 24 h"),  # 27.8 h
        ("yesterday", None, "neither"),
        ("2026-12-01T18:00:00", None, "no zone"),  # local time: never guessed
        ("2026-12-01T18:00:00+25:00", None, "zone"),  # bad zone
        ("2026-12-01T18:00:00 UTC", None, "zone"),
        ("-5", None, "neither"),
        ("1e9", None, "neither"),
        ("nan", None, "neither"),
        ("١٧٩٥٦٠٠٠٠٠", None, "epoch seconds"),  # Arabic-Indic digits: not ASCII
        ("1" * 41, None, "epoch seconds"),
        ("1969-12-31T23:00:00Z", "1970-01-01T00:30:00Z", "1970"),
    ],
)
def test_bad_windows_are_refused_with_a_sentence_saying_what_to_send(start, end, says):
    with pytest.raises(WindowError, match=says):
        parse_window(start, end, NOW)


@settings(max_examples=500)
@given(st.one_of(st.none(), st.text(max_size=50)), st.one_of(st.none(), st.text(max_size=50)))
def test_any_text_gives_a_window_of_at_most_a_day_or_a_window_error(start, end):
    try:
        window = parse_window(start, end, NOW)
    except WindowError as e:
        assert str(e) and str(e).isascii()
        return
    assert 0 < window.seconds <= MAX_WINDOW_S
    assert window.start >= 0 or start is None


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(4999, 1, 1)), st.integers(-23 * 60, 23 * 60))
def test_iso_8601_with_an_offset_is_the_same_moment_as_its_epoch_seconds(moment, offset_min):
    zone = timezone(timedelta(minutes=offset_min))
    aware = moment.replace(tzinfo=zone)
    assert parse_time(aware.isoformat(), "from") == pytest.approx(aware.timestamp(), abs=1e-6)
    assert parse_time(f"{aware.timestamp():.6f}", "from") == pytest.approx(aware.timestamp(), abs=1e-6)


@given(st.floats(0, 1e10), st.floats(0, 1e10))
def test_from_after_to_is_always_refused(a, b):
    with pytest.raises(WindowError):
        parse_window(f"{max(a, b):.3f}", f"{min(a, b):.3f}", NOW)


# ---- speeds, stops, order, caps


def east(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return destination(lat, lon, 90.0, metres)


def test_speeds_are_distance_over_time_of_each_segment_in_kmh():
    a = (40.75, -73.99, 100.0)
    b = (*east(40.75, -73.99, 100.0), 110.0)  # 100 m in 10 s: 36 km/h
    c = (*east(b[0], b[1], 0.0), 130.0)  # still
    assert segment_speeds([a, b, c]) == [None, 36.0, 0.0]
    assert segment_speeds([]) == [] and segment_speeds([a]) == [None]


def test_a_stop_is_30_s_or_more_within_20_m_and_a_red_light_is_not():
    points = []
    lat, lon, t = 40.75, -73.99, 0.0
    for _ in range(10):  # driving: 10 m a second
        lat, lon = east(lat, lon, 10.0)
        t += 1
        points.append((lat, lon, t))
    for _ in range(20):  # a red light: 20 s still
        t += 1
        points.append((lat, lon, t))
    for _ in range(10):
        lat, lon = east(lat, lon, 10.0)
        t += 1
        points.append((lat, lon, t))
    parked_at = (lat, lon)
    for i in range(45):  # parked 45 s, drifting a few metres (GPS noise)
        t += 1
        points.append((*east(lat, lon, 3.0 * (i % 3)), t))
    stops = find_stops(points)
    assert len(stops) == 1
    # It starts within a couple of fixes of the moment the car stood still (the runs are cut greedily).
    assert haversine_m(stops[0].latitude, stops[0].longitude, *parked_at) <= 20.0
    assert 38.0 <= stops[0].start <= 43.0 and stops[0].end == t


def test_stop_finding_is_linear_even_for_a_producer_that_sends_thousands_of_fixes_a_second():
    points = [(40.75, -73.99, i / 1000) for i in range(20_000)]  # 20 s still: no stop, and no quadratic scan
    assert find_stops(points) == []


def test_points_come_back_in_time_order_and_a_repeated_fix_once():
    assert in_time_order([(1.0, 1.0, 3.0), (2.0, 2.0, 1.0), (9.0, 9.0, 3.0), (3.0, 3.0, 2.0)]) == [
        (2.0, 2.0, 1.0),
        (3.0, 3.0, 2.0),
        (9.0, 9.0, 3.0),
    ]


def test_the_builder_keeps_only_the_drivers_fixes_inside_the_window_up_to_the_cap():
    builder = TrackBuilder("drv-1", Window(10.0, 20.0), max_points=3)
    assert builder.add(Fix("drv-2", 1.0, 1.0, 15.0))
    assert builder.add(Fix("drv-1", 1.0, 1.0, 9.9))
    assert builder.add(Fix("drv-1", 1.0, 1.0, 20.1))
    assert builder.add(Fix("drv-1", 1.0, 1.0, 12.0))
    assert builder.add(Fix("drv-1", 1.0, 1.0, 10.0))
    assert not builder.add(Fix("drv-1", 1.0, 1.0, 20.0)), "the third point fills the track"
    track = builder.build()
    assert [p[2] for p in track.points] == [10.0, 12.0, 20.0] and track.truncated


def test_time_labels_fall_on_whole_multiples_of_their_step():
    assert tick_times(290.0, 1210.0, 300.0) == [300.0, 600.0, 900.0, 1200.0]
    assert tick_times(10.0, 20.0, 300.0) == [] and tick_times(20.0, 10.0, 300.0) == []


# ---- ids and names


@pytest.mark.parametrize("bad", ["", "a" * 65, "drv\x00", "drv\n1", "\u0085", "\ud800"])
def test_an_id_no_producer_could_send_is_refused_before_kafka_is_asked(bad):
    with pytest.raises(ValueError, match="driver id"):
        driver_id_from_path(bad)


def test_file_names_hold_only_plain_ascii():
    assert safe_file_part("drv-00042") == "drv-00042"
    assert safe_file_part('../"x"\r\n<b>') == "__x____b_"
    assert safe_file_part("..") == "driver" and safe_file_part("سائق") == "____"
    assert compact_utc(1795645154.9) == "20261125T221914Z"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=64))
def test_markup_text_leaves_nothing_that_html_javascript_or_jinja_could_read_as_code(text):
    marked = markup_text(text)
    assert marked.isascii()
    assert not set(marked) & set("<>\"'`${}\\\n\r\u2028")
    assert html.unescape(marked) == text


# ---- the exported file


class Parsed(HTMLParser):
    """Tags, text and script bodies of a page, as a browser's parser would cut them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def hostile_track() -> TrackBuilder:
    builder = TrackBuilder(HOSTILE, Window(NOW - 600, NOW))
    lat, lon = 40.75, -73.99
    for i in range(300):
        lat, lon = east(lat, lon, 0.0 if 100 <= i < 160 else 8.0)
        builder.add(Fix(HOSTILE, round(lat, 6), round(lon, 6), NOW - 600 + 2 * i))
    return builder


def test_the_exported_track_parses_holds_every_point_and_shows_a_hostile_id_only_as_text():
    track = hostile_track().build()
    exported = track_file(track, OFFLINE)
    page = Parsed(exported)
    assert page.tags.count("script") == 3, "Leaflet inline, folium's two: no script from the id"
    assert "</script><script>" not in exported and "{{7*7}}" not in exported
    assert any(HOSTILE in text for text in page.text), "the legend shows the id, as text"
    script = page.scripts[-1]
    for lat, lon, _ in track.points:
        assert f"{lat}, {lon}" in script, (lat, lon)
    assert len(track.stops) == 1 and "stopped 2 min" in script
    assert page.links == [], "nothing to fetch: no src, no href"


def test_the_cdn_file_takes_only_leaflet_from_folium_s_cdn_and_the_tiles_configured():
    exported = track_file(hostile_track().build(), Assets(False, "https://tile.example.com/{z}/{x}/{y}.png", "me"))
    assert "https://tile.example.com/{z}/{x}/{y}.png" in exported
    assert sorted(Parsed(exported).links) == [
        "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css",
        "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js",
    ], "jQuery, Bootstrap and the icon fonts are dropped"


def test_an_empty_track_and_an_empty_fleet_still_make_a_file():
    empty = TrackBuilder("drv-1", Window(NOW - 60, NOW)).build()
    assert "no fixes in this window" in track_file(empty, OFFLINE)
    assert "0 drivers" in fleet_file([], NOW, 0, AREAS["nyc"], OFFLINE)


def test_the_fleet_file_marks_each_driver_with_its_id_escaped():
    drivers = [Fix(HOSTILE, 40.75, -73.99, NOW, status="on_trip"), Fix("drv-2", 40.76, -73.98, NOW - 5)]
    exported = fleet_file(drivers, NOW, 7, AREAS["nyc"], OFFLINE)
    page = Parsed(exported)
    assert page.tags.count("script") == 3 and "</script><script>" not in exported and "{{7*7}}" not in exported
    # In a JSON string of the script (tojson writes & as \u0026), shown by Leaflet as the id itself.
    assert markup_text(f"{HOSTILE}: on_trip").replace("&", "\\u0026") in page.scripts[-1]
    assert "7 more drivers left out" in "".join(page.text)


def test_speed_classes_cut_the_line_where_the_speed_changes_without_a_gap():
    points = [(0.0, float(i), float(i)) for i in range(5)]
    runs = runs_by_speed(points, [None, 3.0, 4.0, 50.0, 70.0])
    assert [cls for cls, _ in runs] == [speed_class(3.0), speed_class(50.0), speed_class(70.0)]
    assert [line[0][1] for _, line in runs] == [0.0, 2.0, 3.0] and runs[-1][1][-1] == [0.0, 4.0]
    assert speed_class(None) == 0 and speed_class(math.inf) == 4


# ---- the scan loop, against a stand-in for kafka-python's consumer


class FakeConsumer:
    """One partition of (offset, record time ms, key) records, polled two at a time, as kafka-python hands them."""

    def __init__(self, records: list[tuple[int, int, bytes]], partitions: int = 1) -> None:
        self.records = records
        self.partitions = partitions
        self.at: dict = {}
        self.paused: set = set()

    def partitions_for_topic(self, topic):
        return set(range(self.partitions))

    def offsets_for_times(self, wanted, timeout_ms=None):
        def first(ms):
            found = next((o for o, t, _ in self.records if t >= ms), None)
            return None if found is None else SimpleNamespace(offset=found, timestamp=ms)

        return {tp: first(ms) for tp, ms in wanted.items()}

    def end_offsets(self, tps, timeout_ms=None):
        return dict.fromkeys(tps, len(self.records))

    def assign(self, tps):
        self.at = dict.fromkeys(tps, 0)

    def seek(self, tp, offset):
        self.at[tp] = offset

    def position(self, tp, timeout_ms=None):
        return self.at[tp]

    def pause(self, *tps):
        self.paused.update(tps)

    def poll(self, timeout_ms=None, max_records=None):
        batch = {}
        for tp, offset in self.at.items():
            if tp in self.paused or offset >= len(self.records):
                continue
            taken = self.records[offset : offset + 2]
            batch[tp] = [SimpleNamespace(offset=o, timestamp=t, key=k, value=b"") for o, t, k in taken]
            self.at[tp] = offset + len(taken)
        return batch


def scanned(records, plan: ScanPlan) -> tuple[ScanResult, list[int]]:
    taken: list[int] = []

    def take(record) -> bool:
        taken.append(record.offset)
        return True

    result = _scan(FakeConsumer(records), plan, take, lambda _s: None, time.monotonic())
    return result, taken


def test_a_scan_starts_at_the_window_takes_only_its_key_and_stops_at_the_end_offset():
    records = [(o, o * 1000, b"a" if o % 2 else b"b") for o in range(20)]
    result, taken = scanned(records, ScanPlan("t", b"a", since_ms=5000, until_ms=10**9))
    assert taken == [5, 7, 9, 11, 13, 15, 17, 19] and result.records == 15 and result.stopped is None


def test_one_record_stamped_late_does_not_end_a_scan_but_a_run_of_them_does():
    late = 10**12  # a wrong clock's stamp: far after the window
    records = [(0, 0, b"a"), (1, late, b"a"), (2, 1000, b"a")]
    records += [(o, late, b"x") for o in range(3, 3 + PAST_END_RECORDS)] + [(500, 2000, b"a")]
    records = [(i, t, k) for i, (_, t, k) in enumerate(records)]
    result, taken = scanned(records, ScanPlan("t", b"a", since_ms=0, until_ms=60_000))
    assert taken == [0, 1, 2], "the record after the late-stamped one is read; the ones after the run are not"
    assert result.records == 2 + PAST_END_RECORDS


def test_a_scan_stops_when_its_caller_has_enough_or_after_its_records():
    records = [(o, o, b"a") for o in range(50)]
    result, taken = scanned(records, ScanPlan("t", b"a", since_ms=0, until_ms=10**9, max_records=10))
    assert result.stopped == "records" and len(taken) == 10
    plan = ScanPlan("t", b"a", 0, 10**9)
    result = _scan(FakeConsumer(records), plan, lambda r: r.offset < 4, lambda _s: None, time.monotonic())
    assert result.stopped == "cap" and result.records == 5


def test_a_key_is_read_on_the_partition_the_default_partitioner_gives_it():
    consumer = FakeConsumer([(0, 0, b"drv-7")], partitions=6)
    result = _scan(consumer, ScanPlan("t", b"drv-7", 0, 10**9), lambda r: True, lambda _s: None, time.monotonic())
    assert result.partitions == [key_partition(b"drv-7", 6)]


# ---- the keyed walk over fetched batches, against kafka-python's own parsing


def fetched(records: list[tuple[bytes | None, bytes | None, list]], compression: int = 0) -> MemoryRecords:
    """One v2 batch of ``records`` (key, value, headers) from offset 100, as a fetch response holds it."""
    builder = DefaultRecordBatchBuilder(2, compression, 0, -1, -1, -1, batch_size=1 << 20)
    for n, (key, value, headers) in enumerate(records):
        builder.append(n, 1_795_645_154_000 + n * 1000, key, value, headers)
    buffer = bytearray(builder.build())
    buffer[0:8] = (100).to_bytes(8, "big")  # base offset
    return MemoryRecords(bytes(buffer))


@pytest.mark.parametrize("compression", [0, 1], ids=["uncompressed: walked", "gzip: parsed by kafka-python"])
def test_the_keyed_walk_finds_exactly_the_records_kafka_python_finds_for_the_key(compression):
    key = b"drv-00042"
    records = [
        (key, b'{"a":1}', []),
        (b"drv-00043", key, []),  # the key in another record's value
        (None, b"{}", []),
        (key, None, []),  # a tombstone
        (b"drv-0004", b"x" * 300, [("h", b"drv-00042")]),
        (key + b"0", b"{}", []),
        (key, "é".encode() * 100, [("trace", None)]),
        (b"\xff" * 9, b"{}", []),
    ]
    wanted = [(100 + n, 1_795_645_154_000 + n * 1000, k, v) for n, (k, v, _) in enumerate(records) if k == key]
    tp = SimpleNamespace(topic="t", partition=3)
    keyed = type("Keyed", (LeanRecords,), {"key": key})(100, tp, fetched(records, compression))
    got = [(r.offset, r.timestamp, r.key, r.value) for r in keyed.take()]
    assert got == wanted and keyed.next_fetch_offset == 100 + len(records)
