"""The dashboard's zone alerts (fleet/alerts.py): pure, no broker, the clock a parameter."""

from __future__ import annotations

import pytest

from dashboard.audience import Audience
from fleet.alerts import AlertStore
from fleet.zones import ZoneEvent

NOW = 1_800_000_000.0


def event(n: int, at: float, kind: str = "enter", zone: str = "z1", driver: str = "drv-1") -> ZoneEvent:
    return ZoneEvent(driver, zone, f"zone {zone}", kind, 40.75, -73.98, at, n % 6, n)


def test_events_come_newest_first_by_their_own_time_whatever_order_they_arrived_in():
    store = AlertStore()
    for n, at in enumerate([NOW - 5, NOW - 1, NOW - 9, NOW - 3]):
        store.add(event(n, at), NOW)
    assert [e["timestamp"] for e in store.newest(10)] == [NOW - 1, NOW - 3, NOW - 5, NOW - 9]
    assert [e["timestamp"] for e in store.newest(2)] == [NOW - 1, NOW - 3]


def test_an_event_is_the_zone_events_json_of_the_contract():
    store = AlertStore()
    store.add(event(7, NOW, "dwell"), NOW)
    (body,) = store.newest()
    assert body == {
        "driver_id": "drv-1",
        "zone_id": "z1",
        "zone_name": "zone z1",
        "event": "dwell",
        "latitude": 40.75,
        "longitude": -73.98,
        "timestamp": NOW,
        "source": {"partition": 1, "offset": 7},
    }


def test_only_the_last_500_events_are_kept():
    store = AlertStore()
    for n in range(600):
        store.add(event(n, NOW - 600 + n), NOW)
    assert len(store) == 500
    newest = store.newest(500)
    assert newest[0]["source"]["offset"] == 599 and newest[-1]["source"]["offset"] == 100


def test_take_new_hands_over_each_event_once_newest_first():
    store = AlertStore()
    store.add(event(1, NOW - 2), NOW)
    store.add(event(2, NOW - 1), NOW)
    assert [e["source"]["offset"] for e in store.take_new()] == [2, 1]
    assert store.take_new() == []
    store.add(event(3, NOW), NOW)
    assert [e["source"]["offset"] for e in store.take_new()] == [3]


def test_counters_are_the_enters_and_exits_of_the_last_hour_per_zone():
    store = AlertStore()
    store.add(event(1, NOW - 10, "enter"), NOW)
    store.add(event(2, NOW - 8, "exit"), NOW)
    store.add(event(3, NOW - 5, "enter", zone="z2"), NOW)
    store.add(event(4, NOW - 4, "dwell", zone="z2"), NOW)  # listed, not counted
    store.add(event(5, NOW - 7200, "enter"), NOW)  # two hours ago: listed, not counted
    assert store.counters(NOW) == {"z1": {"enter_1h": 1, "exit_1h": 1}, "z2": {"enter_1h": 1, "exit_1h": 0}}
    assert len(store) == 5 and store.too_old == 1


def test_counts_age_out_after_an_hour_to_the_minute():
    store = AlertStore()
    store.add(event(1, NOW, "enter"), NOW)
    store.add(event(2, NOW + 1800, "enter"), NOW + 1800)
    assert store.counters(NOW + 1800)["z1"]["enter_1h"] == 2
    assert store.counters(NOW + 3600 + 120)["z1"]["enter_1h"] == 1
    assert store.counters(NOW + 1800 + 3600 + 120) == {}


def test_late_events_of_another_partition_land_in_their_own_minute():
    store = AlertStore()
    for n, at in enumerate([NOW, NOW - 200, NOW - 100, NOW - 200]):
        store.add(event(n, at, "exit"), NOW)
    assert store.counters(NOW)["z1"] == {"enter_1h": 0, "exit_1h": 4}
    assert store.counters(NOW - 150 + 3600)["z1"]["exit_1h"] == 2  # the two at NOW-100 and NOW still count


def test_the_zones_counted_are_bounded_the_longest_silent_forgotten_first():
    store = AlertStore(max_zones=2)
    for n, zone in enumerate(["a", "b", "a", "c"]):
        store.add(event(n, NOW, zone=zone), NOW)
    assert set(store.counters(NOW)) == {"a", "c"}


def test_bounds_must_be_positive():
    with pytest.raises(ValueError):
        AlertStore(max_events=0)


# ---- who gets ``zones`` and ``zone_alerts`` (dashboard/audience.py, pure)


def plan(audience: Audience, ready: set[str], now: float, zones: int = 0, new_alerts: bool = False):
    return audience.plan(ready, now, frame=False, stats=False, zones_version=zones, new_alerts=new_alerts)


def test_a_new_client_gets_the_zones_and_the_alerts_whole_then_only_new_alerts():
    audience = Audience()
    audience.add("a")
    first = plan(audience, {"a"}, 0.0)
    assert (first.zones, first.alerts_full, first.alerts_new) == (["a"], ["a"], [])
    later = plan(audience, {"a"}, 0.1, new_alerts=True)
    assert (later.zones, later.alerts_full, later.alerts_new) == ([], [], ["a"])
    assert plan(audience, {"a"}, 0.2).alerts_new == []


def test_a_client_too_busy_for_new_alerts_gets_them_whole_once_it_has_drained():
    audience = Audience()
    audience.add("a")
    plan(audience, {"a"}, 0.0)
    assert plan(audience, set(), 0.1, new_alerts=True).alerts_new == []
    assert plan(audience, {"a"}, 0.2).alerts_full == ["a"]


def test_zones_go_out_when_they_change_at_most_once_a_second():
    audience = Audience()
    audience.add("a")
    plan(audience, {"a"}, 0.0, zones=1)
    assert plan(audience, {"a"}, 0.5, zones=2).zones == []
    assert plan(audience, {"a"}, 1.0, zones=2).zones == ["a"]
    assert plan(audience, {"a"}, 2.5, zones=2).zones == [], "unchanged: not sent again"


def test_counts_inside_go_out_on_their_own_so_the_shapes_travel_only_when_the_table_changes():
    audience = Audience()
    audience.add("a")

    def tick(now: float, table: int, counts: int):
        return audience.plan({"a"}, now, frame=False, stats=False, zones_version=table, zone_counts_version=counts)

    first = tick(0.0, 1, 1)
    assert (first.zones, first.zone_counts) == (["a"], ["a"])
    counted = tick(1.0, 1, 2)
    assert (counted.zones, counted.zone_counts) == ([], ["a"]), "a count changed: only the counts go"
    assert tick(1.5, 1, 3).zone_counts == [], "at most once a second"
    table = tick(2.0, 2, 3)
    assert (table.zones, table.zone_counts) == (["a"], ["a"])


def test_a_replaying_client_gets_no_zones_nor_alerts_until_it_is_back_live():
    audience = Audience()
    audience.add("a")
    plan(audience, {"a"}, 0.0, zones=1)
    audience.hold("a")
    held = plan(audience, {"a"}, 5.0, zones=2, new_alerts=True)
    assert (held.zones, held.alerts_full, held.alerts_new) == ([], [], [])
    audience.release("a")
    back = plan(audience, {"a"}, 6.0, zones=2)
    assert (back.snapshot, back.zones, back.alerts_full) == (["a"], ["a"], ["a"])
