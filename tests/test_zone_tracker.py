"""The tracker turns one partition's fixes into enter / exit / dwell events: debounced, once, in order."""

from __future__ import annotations

import random

from fleet.geo import destination
from fleet.zone_tracker import ZoneTracker
from fleet.zones import ZoneTable, parse_zone
from tests.test_zones_core import LAT, LON, circle, square

T0 = 1_800_000_000.0


class Drive:
    """One driver's fixes through a tracker, collecting (event, zone id) pairs."""

    def __init__(self, table: ZoneTable, tracker: ZoneTracker | None = None, driver_id: str = "d1") -> None:
        self.table = table
        self.tracker = tracker if tracker is not None else ZoneTracker()
        self.driver_id = driver_id
        self.offset = 0
        self.events: list[tuple[str, str]] = []

    def at(self, lat: float, lon: float, timestamp: float) -> list[tuple[str, str]]:
        self.offset += 1
        found = self.tracker.observe(
            self.driver_id, lat, lon, timestamp, 0, self.offset, self.table.containing(lat, lon), self.table
        )
        pairs = [(e.event, e.zone_id) for e in found]
        self.events.extend(pairs)
        return pairs


def table_of(**zones) -> ZoneTable:
    table = ZoneTable()
    for zone_id, feature in zones.items():
        table.put(parse_zone(feature, zone_id=zone_id))
    return table


def test_crossing_a_polygon_with_3_m_of_jitter_at_both_edges_enters_once_and_exits_once():
    table = table_of(sq=square(half_m=200.0))
    drive = Drive(table)
    noise = random.Random(7)
    start = destination(LAT, LON, 270.0, 400.0)
    t = T0
    for step in range(0, 800, 2):  # west to east, 2 m per fix, each fix up to 3 m off in any direction
        for _ in range(50 if step in (200, 600) else 1):  # and lingering at each edge for a while
            lat, lon = destination(*start, 90.0, step)
            t += 1
            drive.at(*destination(lat, lon, noise.uniform(0, 360), noise.uniform(0, 3)), t)
    assert drive.events == [("enter", "sq"), ("exit", "sq")]


def test_crossing_a_circle_exits_only_beyond_its_hysteresis():
    table = table_of(c=circle(radius_m=100.0, hysteresis_m=30.0))
    drive = Drive(table)
    assert drive.at(*destination(LAT, LON, 0, 99.0), T0 + 1) == [("enter", "c")]
    assert drive.at(*destination(LAT, LON, 0, 129.0), T0 + 2) == []
    assert drive.at(*destination(LAT, LON, 0, 101.0), T0 + 3) == []
    assert drive.at(*destination(LAT, LON, 0, 131.0), T0 + 4) == [("exit", "c")]
    assert drive.at(*destination(LAT, LON, 0, 101.0), T0 + 5) == []


def test_a_driver_parked_inside_dwells_once():
    table = table_of(q=circle(radius_m=100.0, dwell_s=60), sq=square(half_m=500.0))
    drive = Drive(table)
    for second in range(0, 600, 5):
        drive.at(LAT, LON, T0 + second)
    assert drive.events == [("enter", "q"), ("enter", "sq"), ("dwell", "q")]
    event = drive.tracker.observe("d1", LAT, LON, T0 + 601, 0, 999, table.containing(LAT, LON), table)
    assert event == []


def test_out_of_order_and_stale_fixes_produce_nothing():
    table = table_of(sq=square(half_m=100.0))
    drive = Drive(table)
    far = destination(LAT, LON, 0, 1000.0)
    assert drive.at(*far, T0 + 10) == []
    assert drive.at(LAT, LON, T0 + 5) == [], "an older fix arriving late"
    assert drive.at(LAT, LON, T0 + 10) == [], "a fix as old as the last one"
    assert drive.at(LAT, LON, T0 + 11) == [("enter", "sq")]
    assert drive.at(*far, T0 + 11) == [] and drive.at(*far, T0 + 3) == []
    assert drive.tracker.ignored == 4


def test_a_zone_deleted_with_drivers_inside_gives_each_an_exit_at_its_last_fix():
    table = table_of(sq=square(half_m=100.0), other=square(half_m=100.0))
    tracker = ZoneTracker()
    Drive(table, tracker, "a").at(LAT, LON, T0 + 1)
    Drive(table, tracker, "b").at(LAT + 0.0001, LON, T0 + 2)
    table.remove("sq")
    exits = tracker.zone_deleted("sq")
    assert [(e.driver_id, e.event, e.zone_id, e.zone_name, e.timestamp) for e in exits] == [
        ("a", "exit", "sq", "Square", T0 + 1),
        ("b", "exit", "sq", "Square", T0 + 2),
    ]
    assert tracker.zones_of("a") == {"other"} and tracker.zone_deleted("sq") == []


def test_the_inside_set_survives_a_restart_through_its_changelog():
    table = table_of(q=circle(radius_m=100.0, dwell_s=30))
    before = Drive(table)
    before.at(LAT, LON, T0)
    changelog = before.tracker.take_changes()
    assert set(changelog) == {"d1"} and before.tracker.take_changes() == {}
    restored = ZoneTracker()
    for driver_id, value in changelog.items():
        assert restored.restore(driver_id, value)
    after = Drive(table, restored)
    assert after.at(LAT, LON, T0 - 1) == [], "the restored state knows the last fix"
    assert after.at(LAT, LON, T0 + 31) == [("dwell", "q")], "no second enter; dwell counted from the first"
    assert after.at(*destination(LAT, LON, 0, 500.0), T0 + 40) == [("exit", "q")]
    assert after.tracker.take_changes() == {"d1": None}, "a driver in no zone is a tombstone"
    assert not restored.restore("x", b"{not json") and restored.restore("x", None)


def test_a_restored_driver_in_a_zone_deleted_meanwhile_exits_on_reconcile():
    table = table_of(q=circle())
    drive = Drive(table)
    drive.at(LAT, LON, T0)
    restored = ZoneTracker()
    for driver_id, value in drive.tracker.take_changes().items():
        restored.restore(driver_id, value)
    table.remove("q")
    assert [(e.event, e.zone_name) for e in restored.reconcile(table)] == [("exit", "Circle")]
    assert restored.reconcile(table) == []
