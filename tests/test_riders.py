"""Riders as the map shows them (fleet/riders.py): pure, no broker."""

from __future__ import annotations

import pytest

from fleet.geo import destination
from fleet.riders import (
    EN_ROUTE,
    KEEP_ENDED_S,
    PICKED_UP,
    WAITING,
    WAITING_MAX_S,
    Riders,
    riders_json,
)
from fleet.rides import MATCHED, NO_DRIVER, RideMatch, RideRequest

T0 = 1_795_645_000.0
LAT, LON = 40.75, -73.98


def request(n: int, at: float = T0, lat: float = LAT, lon: float = LON) -> RideRequest:
    return RideRequest(f"req-{n}", f"rider-{n}", lat, lon, at)


def matched(n: int, driver: str, at: float, requested_at: float = T0, eta_s: int = 60) -> RideMatch:
    return RideMatch(
        f"req-{n}", f"rider-{n}", MATCHED, at, requested_at, LAT, LON, driver, 400.0, eta_s, LAT + 0.004, LON
    )


def no_driver(n: int, at: float, requested_at: float = T0) -> RideMatch:
    return RideMatch(f"req-{n}", f"rider-{n}", NO_DRIVER, at, requested_at, LAT, LON)


def no_track(_driver_id: str) -> list:
    return []


def test_a_request_waits_until_its_answer_puts_a_driver_on_the_way():
    riders = Riders()
    assert riders.add_request(request(1), T0 + 0.1)
    assert riders.get("req-1").state == WAITING
    assert riders.counts(T0 + 0.2)["waiting"] == 1
    assert riders.add_match(matched(1, "drv-7", T0 + 2.5))
    ride = riders.get("req-1")
    assert (ride.state, ride.driver_id, ride.distance_m, ride.eta_s) == (EN_ROUTE, "drv-7", 400.0, 60)
    counts = riders.counts(T0 + 3)
    assert (counts["waiting"], counts["en_route"], counts["matched_60s"], counts["median_match_s"]) == (0, 1, 1, 2.5)


def test_an_answer_read_before_its_request_makes_the_ride_and_the_late_request_changes_nothing():
    riders = Riders()
    assert riders.add_match(matched(1, "drv-7", T0 + 1))
    assert not riders.add_request(request(1), T0 + 2)
    ride = riders.get("req-1")
    assert (ride.state, ride.rider_id, ride.requested_at) == (EN_ROUTE, "rider-1", T0)
    assert len(riders) == 1


def test_a_repeated_answer_is_counted_once():
    riders = Riders()
    riders.add_request(request(1), T0)
    assert riders.add_match(matched(1, "drv-7", T0 + 1))
    assert not riders.add_match(matched(1, "drv-8", T0 + 2))
    assert riders.get("req-1").driver_id == "drv-7"
    assert riders.counts(T0 + 3)["matched_total"] == 1


def test_the_rider_is_picked_up_when_a_fix_of_its_driver_after_the_match_is_within_50_m():
    riders = Riders()
    riders.add_request(request(1), T0)
    riders.add_match(matched(1, "drv-7", T0 + 1))
    near = destination(LAT, LON, 90.0, 40.0)  # 40 m east
    far = destination(LAT, LON, 90.0, 80.0)
    tracks = {"drv-7": [(near[0], near[1], T0 + 0.5), (far[0], far[1], T0 + 5)]}
    assert riders.check_pickups(lambda d: tracks.get(d, []), T0 + 6) == 0, "a fix from before the match is not it"
    tracks["drv-7"].append((near[0], near[1], T0 + 9))
    assert riders.check_pickups(lambda d: tracks.get(d, []), T0 + 10) == 1
    ride = riders.get("req-1")
    assert (ride.state, ride.ended_at) == (PICKED_UP, T0 + 9)
    assert riders.counts(T0 + 10)["en_route"] == 0


def test_another_drivers_fix_at_the_rider_does_not_pick_it_up():
    riders = Riders()
    riders.add_match(matched(1, "drv-7", T0 + 1))
    assert riders.check_pickups(lambda d: [(LAT, LON, T0 + 5)] if d == "drv-other" else [], T0 + 6) == 0
    assert riders.get("req-1").state == EN_ROUTE


def test_ended_rides_are_kept_a_little_while_then_forgotten():
    riders = Riders()
    riders.add_request(request(1), T0)
    riders.add_match(no_driver(1, T0 + 30))
    assert riders.sweep(T0 + 30 + KEEP_ENDED_S - 1) == 0
    assert riders.get("req-1").state == NO_DRIVER
    assert riders.sweep(T0 + 30 + KEEP_ENDED_S + 1) == 1
    assert riders.get("req-1") is None
    assert riders.expired == 0, "an ended ride is not an expired one"
    assert not riders.add_match(no_driver(1, T0 + 60)), "the answer is remembered after the ride is forgotten"


def test_unanswered_and_never_reached_rides_expire():
    riders = Riders()
    riders.add_request(request(1), T0)
    riders.add_match(matched(2, "drv-7", T0 + 1, eta_s=30))  # limit: 120 s + 3 x 30 s after the match
    riders.sweep(T0 + 210)
    assert riders.get("req-2").state == EN_ROUTE
    riders.sweep(T0 + 212)
    assert riders.get("req-2") is None and riders.get("req-1").state == WAITING
    riders.sweep(T0 + WAITING_MAX_S + 1)
    assert len(riders) == 0 and riders.expired == 2


def test_a_request_older_than_any_wait_is_not_held():
    riders = Riders()
    assert not riders.add_request(request(1, at=T0), T0 + WAITING_MAX_S + 1)
    assert len(riders) == 0


def test_counts_cover_the_last_minute_and_the_median_time_to_match():
    riders = Riders()
    # Answers of several partitions arrive out of time order.
    for n, (answered, waited) in enumerate([(T0 + 50, 1.0), (T0 + 5, 9.0), (T0 + 70, 3.0), (T0 + 65, 2.0)]):
        riders.add_match(matched(n, f"drv-{n}", answered, requested_at=answered - waited))
    riders.add_match(no_driver(10, T0 + 8))
    riders.add_match(no_driver(11, T0 + 40))
    counts = riders.counts(T0 + 75)  # the last minute: from T0 + 15
    assert counts["matched_60s"] == 3
    assert counts["median_match_s"] == 2.0
    assert (counts["no_driver_60s"], counts["no_driver_total"], counts["matched_total"]) == (1, 2, 4)
    assert riders.counts(T0 + 200)["median_match_s"] is None


def test_at_most_max_rides_are_held_the_oldest_go_first():
    riders = Riders(max_rides=3)
    for n in range(5):
        riders.add_request(request(n, at=T0 + n), T0 + n)
    assert [ride.request_id for ride in riders] == ["req-2", "req-3", "req-4"]
    assert riders.evicted == 2


def test_every_change_a_page_sees_moves_the_version():
    riders = Riders()
    versions = [riders.version]
    riders.add_request(request(1), T0)
    versions.append(riders.version)
    riders.add_match(matched(1, "drv-7", T0 + 1))
    versions.append(riders.version)
    riders.check_pickups(lambda d: [(LAT, LON, T0 + 2)], T0 + 3)
    versions.append(riders.version)
    riders.sweep(T0 + 100)
    versions.append(riders.version)
    assert versions == sorted(set(versions)), versions
    riders.sweep(T0 + 101)
    riders.check_pickups(no_track, T0 + 101)
    assert riders.version == versions[-1], "nothing changed, nothing to send"


def test_riders_json_holds_the_newest_rides_and_says_how_many_were_left_out():
    riders = Riders()
    for n in range(4):
        riders.add_request(request(n, at=T0 + n), T0 + n)
    riders.add_match(matched(3, "drv-1", T0 + 5, requested_at=T0 + 3))
    body = riders_json(riders, T0 + 6, limit=2)
    assert body["omitted"] == 2
    assert [r["id"] for r in body["riders"]] == ["req-2", "req-3"]
    assert body["riders"][1] == {
        "id": "req-3",
        "rider_id": "rider-3",
        "lat": LAT,
        "lon": LON,
        "state": EN_ROUTE,
        "requested_at": T0 + 3,
        "driver_id": "drv-1",
        "answered_at": T0 + 5,
        "distance_m": 400.0,
        "eta_s": 60,
        "ended_at": None,
    }
    assert body["counts"]["waiting"] == 3


def test_max_rides_must_be_positive():
    with pytest.raises(ValueError):
        Riders(max_rides=0)
