"""Riders in the simulator: the ride state machine, steering to a goal, and the loop with the real matcher."""

from __future__ import annotations

import copy
import random
import re
import signal
import time
import uuid
from itertools import pairwise

import pytest
from kafka import KafkaConsumer, TopicPartition

from fleet.geo import AREAS, BBox, destination, haversine_m
from fleet.rides import MATCHED, NO_DRIVER, RideMatch, parse_match, parse_request, request_key
from fleet.schema import Fix, Status, encode_fix, parse_fix
from simulator.fleet_model import FleetConfig, SimulatedFleet
from simulator.motion import Car, DrivingStyle, OpenRoads, StreetGrid
from simulator.rides import (
    ARRIVE_M,
    DONE,
    DROPOFF_STOP,
    PICKUP_STOP,
    TO_DESTINATION,
    TO_PICKUP,
    RideBook,
    RiderSchedule,
    RideTiming,
)
from simulator.status import StatusMix
from tests.conftest import PYTHON

NYC = AREAS["nyc"]
STYLE = DrivingStyle()
ROUNDING_M = 0.2
QUICK = RideTiming(pickup_stop_s=(10.0, 10.0), dropoff_stop_s=(6.0, 6.0))


def a_match(driver_id: str, pickup: tuple[float, float], request_id: str = "sim-test-000001") -> RideMatch:
    return RideMatch(request_id, "rider-test-000001", MATCHED, 0.0, 0.0, *pickup, driver_id, 100.0, 15, 0.0, 0.0)


def drive_to(roads, car: Car, goal: tuple[float, float], seconds: int, seed: int = 1) -> list[Car]:
    """The car after each second of heading for ``goal``."""
    rng = random.Random(seed)
    roads.head_for(car, goal, rng)
    trail = [copy.copy(car)]
    for _ in range(seconds):
        roads.advance(car, 1.0, rng)
        trail.append(copy.copy(car))
    return trail


def assert_drives_within_the_rules(trail: list[Car], area: BBox, style: DrivingStyle) -> None:
    for a, b in pairwise(trail):
        assert area.contains(b.lat, b.lon)
        assert b.speed <= style.max_speed + 1e-9
        assert b.speed - a.speed <= style.accel_mps2 + 1e-9 and a.speed - b.speed <= style.brake_mps2 + 1e-9
        assert haversine_m(a.lat, a.lon, b.lat, b.lon) <= style.max_speed + 1e-6


@pytest.mark.parametrize("bearing", [0.0, 90.0, 200.0, 300.0])
def test_on_open_roads_a_car_steers_to_its_goal_and_stops_there(bearing):
    roads = OpenRoads(NYC, STYLE)
    car = Car(lat=40.75, lon=-73.975, heading=bearing, speed=10.0, cruise=12.0)
    goal = destination(40.75, -73.975, bearing + 150.0, 1500.0)  # behind the car: it must turn round
    trail = drive_to(roads, car, goal, seconds=240)
    assert_drives_within_the_rules(trail, NYC, STYLE)
    distances = [haversine_m(c.lat, c.lon, *goal) for c in trail]
    arrived = next(i for i, d in enumerate(distances) if d <= ARRIVE_M)
    assert arrived < 200
    assert distances[-1] < 5.0 and trail[-1].speed < 1.0, "it stops on the goal, not past it"


def test_on_the_street_grid_a_car_drives_the_blocks_to_its_goal_and_stops_there():
    grid = StreetGrid(NYC, STYLE)
    rng = random.Random(4)
    driven = 0
    for _ in range(5):
        car = grid.place(rng)
        goal = grid.roadside(*destination(car.lat, car.lon, rng.uniform(0, 360), rng.uniform(800, 2500)))
        if goal is None:
            continue
        trail = drive_to(grid, car, goal, seconds=900, seed=rng.randrange(100))
        assert_drives_within_the_rules(trail, NYC, STYLE)
        distances = [haversine_m(c.lat, c.lon, *goal) for c in trail]
        assert min(distances) <= ARRIVE_M
        assert distances[-1] < 5.0, "it waits on the goal once there"
        for c in trail:
            off_street = abs(c.a - grid.STREET_SPACING_M * round(c.a / grid.STREET_SPACING_M))
            off_avenue = abs(c.s - grid.AVENUE_SPACING_M * round(c.s / grid.AVENUE_SPACING_M))
            assert min(off_street, off_avenue) < 1e-6, "along avenues and streets only"
        driven += 1
    assert driven >= 3


def test_roadside_points_on_the_grid_lie_on_a_block_inside_the_area():
    grid = StreetGrid(NYC, STYLE)
    rng = random.Random(2)
    points = [(rng.uniform(NYC.min_lat, NYC.max_lat), rng.uniform(NYC.min_lon, NYC.max_lon)) for _ in range(300)]
    spots = [(point, grid.roadside(*point)) for point in points]
    found = [(point, spot) for point, spot in spots if spot is not None]
    assert len(found) >= 0.9 * len(points), "only points by the edge have no whole block near them"
    for point, spot in found:
        assert NYC.contains(*spot)
        # The nearest street is at most half a block away; by the edge, the nearest avenue.
        assert haversine_m(*point, *spot) <= grid.AVENUE_SPACING_M / 2 + 1.0
    assert sum(haversine_m(*point, *spot) <= grid.STREET_SPACING_M / 2 + 1.0 for point, spot in found) > 0.9 * len(
        found
    )


def one_driver_fleet(seed: int = 3, mix: StatusMix | None = None, street_grid: bool = False) -> SimulatedFleet:
    config = FleetConfig(
        drivers=1,
        interval_s=1.0,
        style=DrivingStyle(mean_s_between_stops=1e12),
        street_grid=street_grid,
        mix=mix or StatusMix(on_trip_share=0.0, offline_share=0.0),
        timing=QUICK,
    )
    return SimulatedFleet(config, seed)


def run_slots(fleet: SimulatedFleet, first: int, last: int) -> list[Fix | None]:
    return [fleet.fix_for_slot(slot, float(slot)) for slot in range(first, last)]


@pytest.mark.parametrize("street_grid", [False, True], ids=["open roads", "street grid"])
def test_a_matched_driver_goes_on_trip_drives_to_the_rider_then_the_destination_then_is_available(street_grid):
    fleet = one_driver_fleet(street_grid=street_grid)
    first = fleet.fix_for_slot(0, 0.0)
    driver = fleet.drivers[0]
    pickup = fleet.roads.roadside(*destination(first.latitude, first.longitude, 45.0, 700.0)) or (
        first.latitude,
        first.longitude,
    )
    ride = fleet.assign_ride(a_match(driver.driver_id, pickup), pickup, now=0.0)
    assert ride is not None and ride.phase == TO_PICKUP and fleet.rides_in_progress == 1
    phases, fixes = [], []
    for slot in range(1, 3000):
        fixes.append(fleet.fix_for_slot(slot, float(slot)))
        phases.append(ride.phase)
        if ride.phase == DONE:
            break
    assert ride.phase == DONE, "the ride ends within the test's time"
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        TO_PICKUP,
        PICKUP_STOP,
        TO_DESTINATION,
        DROPOFF_STOP,
        DONE,
    ]
    assert all(f.status == Status.ON_TRIP for f in fixes[:-1]) and fixes[-1].status == Status.AVAILABLE
    at_pickup = phases.index(PICKUP_STOP)
    assert haversine_m(fixes[at_pickup].latitude, fixes[at_pickup].longitude, *pickup) <= ARRIVE_M
    standing = [f for f, p in zip(fixes, phases, strict=True) if p == PICKUP_STOP and f.speed_kmh == 0.0]
    assert len(standing) >= QUICK.pickup_stop_s[0] - 1, "the rider has time to get in (give or take a fix)"
    last = fixes[-1]
    assert haversine_m(last.latitude, last.longitude, *ride.destination) <= ARRIVE_M
    for a, b in pairwise([first, *fixes]):
        assert NYC.contains(b.latitude, b.longitude)
        assert haversine_m(a.latitude, a.longitude, b.latitude, b.longitude) <= STYLE.max_speed + ROUNDING_M
        assert b.speed_kmh <= STYLE.max_speed_kmh + 1e-6
    assert fleet.rides_in_progress == 0 and fleet.rides_completed == 1


def test_the_random_status_mix_leaves_a_driver_on_a_ride_alone():
    # Almost everybody goes offline within seconds: a driver on a ride must not.
    fleet = one_driver_fleet(mix=StatusMix(on_trip_share=0.0, offline_share=0.95))
    first = fleet.fix_for_slot(0, 0.0)
    pickup = destination(first.latitude, first.longitude, 90.0, 400.0)
    ride = fleet.assign_ride(a_match("drv-00001", pickup), pickup, now=0.0)
    fixes = []
    slot = 1
    while ride.phase != DONE:
        fixes.append(fleet.fix_for_slot(slot, float(slot)))
        slot += 1
        assert slot < 3000
    assert None not in fixes, "never silent (offline) during the ride"
    assert {f.status for f in fixes[:-1]} == {Status.ON_TRIP}


def test_a_match_takes_an_offline_driver_back_and_nobody_holds_two_riders():
    fleet = one_driver_fleet()
    fleet.fix_for_slot(0, 0.0)
    driver = fleet.drivers[0]
    fleet.set_status(driver, Status.OFFLINE, 0.0)  # went offline after the matcher last saw it free
    pickup = (driver.car.lat + 0.003, driver.car.lon)
    assert fleet.assign_ride(a_match(driver.driver_id, pickup), pickup, now=0.0) is not None
    assert fleet.fix_for_slot(1, 1.0).status == Status.ON_TRIP
    second = a_match(driver.driver_id, pickup, request_id="sim-test-000002")
    assert fleet.assign_ride(second, pickup, now=1.0) is None, "already carrying a rider"
    assert fleet.assign_ride(a_match("drv-99999", pickup), pickup, now=1.0) is None, "not our driver"
    assert fleet.rides_in_progress == 1


def test_riders_ask_at_poisson_times_averaging_the_rate_asked_for():
    schedule = RiderSchedule(per_minute=120.0, rng=random.Random(5))
    counts = [schedule.due(float(second)) for second in range(1, 601)]
    assert sum(counts) == pytest.approx(1200, rel=0.08)
    assert max(counts) >= 5 and counts.count(0) > 30, "bursts and lulls, not a metronome"
    assert RiderSchedule(per_minute=0.0, rng=random.Random(5)).due(1e9) == 0


def test_riders_stand_by_a_road_inside_the_area_mostly_near_free_drivers():
    fleet = SimulatedFleet(FleetConfig(drivers=30, street_grid=True), seed=8)
    rng = random.Random(1)
    spots = [fleet.rider_spot(rng) for _ in range(200)]
    assert all(NYC.contains(*spot) for spot in spots)
    near = [s for s in spots if min(haversine_m(*s, d.car.lat, d.car.lon) for d in fleet.drivers) <= 1600]
    assert len(near) >= 150


def test_the_ride_book_issues_unique_ids_and_only_counts_answers_to_its_own_requests():
    book, other = RideBook("aaaa1111"), RideBook("bbbb2222")
    first, second = book.new_request((40.75, -73.98), 1.7e9, 0.0), book.new_request((40.76, -73.97), 1.7e9, 1.0)
    foreign = other.new_request((40.75, -73.98), 1.7e9, 0.0)
    assert len({first.request_id, second.request_id, foreign.request_id}) == 3
    assert first.request_id == "sim-aaaa1111-000001" and first.rider_id == "rider-aaaa1111-000001"
    no_driver = RideMatch(second.request_id, second.rider_id, NO_DRIVER, 2.0, 1.0, 40.76, -73.97)
    assert book.answer(a_match("drv-00001", (40.75, -73.98), foreign.request_id)) is None
    assert book.answer(a_match("drv-00001", (40.75, -73.98), first.request_id)) == first
    assert book.answer(a_match("drv-00001", (40.75, -73.98), first.request_id)) is None, "answered once"
    assert book.answer(no_driver) == second
    assert (book.counts.requested, book.counts.matched, book.counts.no_driver) == (2, 1, 1)
    book.new_request((40.75, -73.98), 1.7e9, 0.0)
    assert book.forget_unanswered(1000.0) == 1 and not book.pending


# --- with Kafka and the real matcher ------------------------------------------------------------

# About 2 km x 2 km of Midtown: 50 drivers leave every rider a driver a few hundred metres away.
BOX = "40.740,-73.995,40.758,-73.971"
REACTION_S = 2.0


def read_all(consumer: KafkaConsumer, into: list) -> None:
    for records in consumer.poll(timeout_ms=200).values():
        into.extend(records)


def assign_from_start(consumer: KafkaConsumer, topic: str) -> None:
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)


def test_the_simulator_sends_riders_and_matched_drivers_drive_to_them(kafka_bootstrap, make_topic, processes):
    fixes_topic, requests_topic, matches_topic = (make_topic(stem, partitions=3) for stem in ("loc", "req", "match"))
    group = f"sim-rides-{uuid.uuid4().hex[:8]}"
    matcher = processes(
        [
            PYTHON,
            "-m",
            "matcher",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--driver-topic",
            fixes_topic,
            "--request-topic",
            requests_topic,
            "--match-topic",
            matches_topic,
            "--group-id",
            group,
            "--instance-id",
            f"{group}-1",
            "--partitions",
            "3",
        ]
    )
    simulator = processes(
        [
            PYTHON,
            "-m",
            "simulator",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            fixes_topic,
            "--request-topic",
            requests_topic,
            "--match-topic",
            matches_topic,
            "--riders-per-minute",
            "120",
            "--drivers",
            "50",
            "--interval",
            "0.5",
            "--bbox",
            BOX,
            "--max-speed-kmh",
            "100",
            "--on-trip-share",
            "0",
            "--offline-share",
            "0",
            "--seed",
            "7",
        ]
    )
    fixes_reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    matches_reader = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    requests_reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    for consumer, topic in (
        (fixes_reader, fixes_topic),
        (matches_reader, matches_topic),
        (requests_reader, requests_topic),
    ):
        assign_from_start(consumer, topic)
    fix_records, match_records, request_records = [], [], []
    picked_up: set[str] = set()
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and len(picked_up) < 3:
            for consumer, into in (
                (fixes_reader, fix_records),
                (matches_reader, match_records),
                (requests_reader, request_records),
            ):
                read_all(consumer, into)
            picked_up = drivers_that_reached_their_rider(fix_records, match_records)
        simulator.send_signal(signal.SIGINT)
        sim_out, sim_err = simulator.communicate(timeout=30)
        matcher.send_signal(signal.SIGINT)
        matcher.communicate(timeout=30)
    finally:
        for consumer in (fixes_reader, matches_reader, requests_reader):
            consumer.close()

    assert simulator.returncode == 0 and "Traceback" not in sim_err, sim_err[-3000:]
    requests = {}
    for record in request_records:
        request = parse_request(record.value, time.time())
        assert record.key == request_key(request.latitude, request.longitude)
        assert re.fullmatch(r"sim-[0-9a-f]{8}-\d{6}", request.request_id)
        assert BBox.parse(BOX).contains(request.latitude, request.longitude)
        requests[request.request_id] = request
    matched = [m for m in (parse_match(r.value, time.time()) for r in match_records) if m.outcome == MATCHED]
    assert len(requests) >= 5 and matched and all(m.request_id in requests for m in matched)
    assert len(picked_up) >= 1, "a matched driver reached its rider within the test's time"
    trails = fixes_by_driver(fix_records)
    for match in matched:
        # The answer needs a moment to reach the simulator (the matcher commits every 100 ms, the
        # simulator looks every 100 ms), then the driver's next fix, one interval later, says on_trip.
        late = [f for f in trails[match.driver_id] if f.timestamp >= match.timestamp + REACTION_S]
        if not late:
            continue  # matched just before the simulator stopped
        assert late[0].status == Status.ON_TRIP, f"{match.driver_id} goes on trip at once"
        distances = [haversine_m(f.latitude, f.longitude, match.latitude, match.longitude) for f in late]
        arrived = next((i for i, d in enumerate(distances) if d <= ARRIVE_M), None)
        if arrived is not None:
            assert {f.status for f in late[: arrived + 1]} == {Status.ON_TRIP}, "on trip all the way to the rider"
            assert distances[arrived] < distances[0] or arrived == 0, "it drove to the rider"
    for trail in trails.values():
        for a, b in pairwise(trail):
            step = haversine_m(a.latitude, a.longitude, b.latitude, b.longitude)
            assert step <= 100 / 3.6 * (b.timestamp - a.timestamp) + ROUNDING_M
    summary = re.findall(r"rides: requests sent (\d+), matches received (\d+), no driver (\d+)", sim_err)
    # The matcher may answer a last request after the simulator stopped reading.
    assert summary and int(summary[-1][0]) == len(requests) and 0 < int(summary[-1][1]) <= len(matched)


def fixes_by_driver(records) -> dict[str, list[Fix]]:
    trails: dict[str, list[Fix]] = {}
    for record in records:
        fix = parse_fix(record.value, time.time())
        trails.setdefault(fix.driver_id, []).append(fix)
    for trail in trails.values():
        trail.sort(key=lambda f: f.seq)
    return trails


def drivers_that_reached_their_rider(fix_records, match_records) -> set[str]:
    """Drivers whose fixes after their match came within ARRIVE_M of the rider while on trip."""
    trails = fixes_by_driver(fix_records)
    reached = set()
    for record in match_records:
        match = parse_match(record.value, time.time())
        if match.outcome != MATCHED:
            continue
        for fix in trails.get(match.driver_id, []):
            near = haversine_m(fix.latitude, fix.longitude, match.latitude, match.longitude) <= ARRIVE_M
            if fix.timestamp >= match.timestamp and fix.status == Status.ON_TRIP and near:
                reached.add(match.driver_id)
                break
    return reached


def test_a_fix_of_a_driver_on_a_ride_is_a_valid_driver_location_message():
    fleet = one_driver_fleet()
    fix = fleet.fix_for_slot(0, 1.7e9)
    pickup = (fix.latitude, fix.longitude + 0.004)
    fleet.assign_ride(a_match("drv-00001", pickup), pickup, now=0.0)
    parsed = parse_fix(encode_fix(fleet.fix_for_slot(1, 1.7e9 + 1)), now=1.7e9 + 1)
    assert parsed.status == Status.ON_TRIP and parsed.seq == 1
