"""The simulator's pure parts: how cars move, how statuses change, the schedule, the flags. No broker."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from itertools import pairwise

import pytest

from fleet.errors import UsageError
from fleet.geo import AREAS, BBox, haversine_m
from fleet.schema import STATUSES, Fix, Status, encode_fix, parse_fix
from simulator.cli import fleet_config, parse_settings
from simulator.fleet_model import FleetConfig, SimulatedFleet
from simulator.motion import DrivingStyle, OpenRoads, StreetGrid, angle_diff
from simulator.status import StatusMix

NYC = AREAS["nyc"]
STYLE = DrivingStyle()
# A fix is rounded to 6 decimals: at most ~0.06 m per coordinate, so a step can look 0.2 m longer.
ROUNDING_M = 0.2


def drive(config: FleetConfig, seed: int, rounds: int) -> list[Fix]:
    """Every fix a fleet makes over ``rounds`` intervals, timestamped with its slot time."""
    fleet = SimulatedFleet(config, seed)
    fixes = []
    for slot in range(config.drivers * rounds):
        fix = fleet.fix_for_slot(slot, fleet.slot_time(slot))
        if fix is not None:
            fixes.append(parse_fix(encode_fix(fix), now=1e12))  # what a consumer would read
    return fixes


def by_driver(fixes: list[Fix]) -> dict[str, list[Fix]]:
    trails = defaultdict(list)
    for fix in fixes:
        trails[fix.driver_id].append(fix)
    return trails


def consecutive(fixes: list[Fix]):
    for trail in by_driver(fixes).values():
        yield from pairwise(trail)


@pytest.fixture(scope="module")
def open_road_fixes() -> list[Fix]:
    return drive(FleetConfig(drivers=100, interval_s=1.0), seed=11, rounds=900)


@pytest.fixture(scope="module")
def grid_fixes() -> list[Fix]:
    return drive(FleetConfig(drivers=100, interval_s=1.0, street_grid=True), seed=12, rounds=900)


@pytest.mark.parametrize("fixes_name", ["open_road_fixes", "grid_fixes"])
def test_every_fix_lies_inside_the_area(fixes_name, request):
    fixes = request.getfixturevalue(fixes_name)
    outside = [f for f in fixes if not NYC.contains(f.latitude, f.longitude)]
    assert not outside, f"{len(outside)} fixes outside the area, e.g. {outside[0]}"


@pytest.mark.parametrize("fixes_name", ["open_road_fixes", "grid_fixes"])
def test_no_jump_between_two_fixes_is_faster_than_the_top_speed(fixes_name, request):
    fixes = request.getfixturevalue(fixes_name)
    worst = max(
        haversine_m(a.latitude, a.longitude, b.latitude, b.longitude)
        - ROUNDING_M
        - STYLE.max_speed * (b.timestamp - a.timestamp)
        for a, b in consecutive(fixes)
    )
    assert worst <= 0.0, f"a step is {worst:.2f} m longer than the top speed allows"


@pytest.mark.parametrize("fixes_name", ["open_road_fixes", "grid_fixes"])
def test_speeds_cover_stops_and_city_cruising_without_passing_the_limit(fixes_name, request):
    fixes = request.getfixturevalue(fixes_name)
    moving = [f for f in fixes if f.status != Status.OFFLINE]
    speeds = [f.speed_kmh for f in moving]
    assert max(speeds) <= STYLE.max_speed_kmh
    assert max(speeds) > 45.0
    stopped = sum(1 for s in speeds if s == 0.0)
    assert 0.03 < stopped / len(speeds) < 0.6, "cars should stop now and then, not all the time"


def test_open_road_speed_changes_within_bounded_acceleration(open_road_fixes):
    # speed_kmh is rounded to 0.1 km/h on the wire
    limit_kmh = max(STYLE.accel_mps2, STYLE.brake_mps2) * 3.6 + 0.1
    worst = max(abs(b.speed_kmh - a.speed_kmh) for a, b in consecutive(open_road_fixes) if b.status != Status.OFFLINE)
    assert worst <= limit_kmh


def test_open_road_heading_turns_smoothly(open_road_fixes):
    # The wheel turns at most max_turn_dps; lane wander adds a little noise (6 sigma here).
    limit = STYLE.max_turn_dps + 6 * STYLE.wander_deg + 0.1
    turns = [abs(angle_diff(a.heading, b.heading)) for a, b in consecutive(open_road_fixes) if b.speed_kmh > 0]
    assert max(turns) <= limit
    assert sum(1 for t in turns if t > 10.0) > 100, "cars should turn, not drive straight forever"


def test_street_grid_cars_drive_along_avenues_and_streets(grid_fixes):
    headings = Counter(round(f.heading) % 360 for f in grid_fixes)
    assert set(headings) <= {29, 119, 209, 299}
    assert all(headings[h] > 0.1 * len(grid_fixes) for h in (29, 119, 209, 299))


def test_street_grid_positions_lie_on_grid_lines(grid_fixes):
    lat0, lon0 = NYC.center
    m_per_deg = 6_371_008.8 * math.pi / 180
    bearing = math.radians(29.0)
    for fix in grid_fixes[::37]:
        east = (fix.longitude - lon0) * m_per_deg * math.cos(math.radians(lat0))
        north = (fix.latitude - lat0) * m_per_deg
        along_avenue = east * math.sin(bearing) + north * math.cos(bearing)
        along_street = east * math.cos(bearing) - north * math.sin(bearing)
        off_street = abs(along_avenue - 80.0 * round(along_avenue / 80.0))
        off_avenue = abs(along_street - 270.0 * round(along_street / 270.0))
        assert min(off_street, off_avenue) < 0.2, f"{fix} is on neither a street nor an avenue"


@pytest.mark.parametrize("street_grid", [False, True])
def test_cars_turn_back_at_the_edge_of_a_small_area(street_grid):
    small = BBox(40.750, -73.990, 40.755, -73.983)  # about 550 m x 600 m
    fixes = drive(FleetConfig(drivers=20, area=small, street_grid=street_grid), seed=3, rounds=600)
    assert all(small.contains(f.latitude, f.longitude) for f in fixes)
    spread = {(round(f.latitude, 3), round(f.longitude, 3)) for f in fixes}
    assert len(spread) > 15, "cars should roam the whole area, not stick to one spot"


def test_long_intervals_are_driven_in_steps_so_cars_still_curve_inside_the_area():
    small = BBox(40.750, -73.990, 40.753, -73.986)
    fixes = drive(FleetConfig(drivers=10, interval_s=5.0, area=small), seed=4, rounds=200)
    assert all(small.contains(f.latitude, f.longitude) for f in fixes)


def test_same_seed_same_positions_other_seed_other_positions():
    config = FleetConfig(drivers=30, interval_s=0.5)

    def positions(seed):
        return [(f.driver_id, f.seq, f.latitude, f.longitude, f.status) for f in drive(config, seed, rounds=60)]

    assert positions(7) == positions(7)
    assert positions(7) != positions(8)


def test_seq_counts_each_drivers_fixes_from_zero_without_gaps(open_road_fixes):
    for driver_id, trail in by_driver(open_road_fixes).items():
        assert [f.seq for f in trail] == list(range(len(trail))), driver_id


def test_fixes_of_one_round_are_spread_evenly_over_the_interval():
    fleet = SimulatedFleet(FleetConfig(drivers=4, interval_s=2.0), seed=1)
    assert [fleet.slot_time(k) for k in range(9)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    ids = [fleet.fix_for_slot(k, 0.0).driver_id for k in range(8)]
    assert ids == ["drv-00001", "drv-00002", "drv-00003", "drv-00004"] * 2


def test_id_prefix_and_first_id_keep_two_fleets_apart():
    config = FleetConfig(drivers=3, id_prefix="east-", first_id=500)
    assert [config.driver_id(i) for i in range(3)] == ["east-00500", "east-00501", "east-00502"]


def test_an_offline_driver_goes_silent_then_returns_with_its_seq_continuing():
    mix = StatusMix(on_trip_share=0.2, offline_share=0.3, mean_trip_s=60.0, mean_offline_s=20.0)
    config = FleetConfig(drivers=10, interval_s=1.0, mix=mix)
    fleet = SimulatedFleet(config, seed=5)
    slots_seen = defaultdict(list)  # driver -> [(slot time, fix or None)]
    for slot in range(10 * 600):
        fix = fleet.fix_for_slot(slot, fleet.slot_time(slot))
        slots_seen[config.driver_id(slot % 10)].append((fleet.slot_time(slot), fix))
    returns = 0
    for history in slots_seen.values():
        sent = [fix for _, fix in history if fix is not None]
        assert [f.seq for f in sent] == list(range(len(sent)))
        for (_, before), (_, after) in pairwise(history):
            if before is not None and before.status == Status.OFFLINE:
                assert after is None, "an offline driver sends nothing after saying it is offline"
        for i, (_, fix) in enumerate(history):
            if fix is not None and fix.status == Status.AVAILABLE and i > 0 and history[i - 1][1] is None:
                last = next(f for _, f in reversed(history[:i]) if f is not None)
                assert last.status == Status.OFFLINE and fix.seq == last.seq + 1
                assert (fix.latitude, fix.longitude) == (last.latitude, last.longitude), "parked while offline"
                returns += 1
    assert returns >= 5


def test_drivers_pull_over_before_going_offline():
    mix = StatusMix(on_trip_share=0.1, offline_share=0.3, mean_trip_s=30.0, mean_offline_s=20.0)
    fixes = drive(FleetConfig(drivers=20, mix=mix), seed=6, rounds=400)
    offline = [f for f in fixes if f.status == Status.OFFLINE]
    assert len(offline) > 20
    assert all(f.speed_kmh == 0.0 for f in offline)


def test_status_shares_match_what_was_asked_for():
    mix = StatusMix(on_trip_share=0.4, offline_share=0.1, mean_trip_s=120.0, mean_offline_s=60.0)
    fleet = SimulatedFleet(FleetConfig(drivers=500, interval_s=10.0, mix=mix), seed=9)
    totals = Counter()
    for slot in range(500 * 180):  # 30 simulated minutes, counted once a simulated minute
        fleet.fix_for_slot(slot, 0.0)
        if slot % 3000 == 2999:
            totals.update(fleet.counts())
    samples = sum(totals.values())
    assert totals[Status.ON_TRIP] / samples == pytest.approx(0.4, abs=0.04)
    assert totals[Status.OFFLINE] / samples == pytest.approx(0.1, abs=0.03)


def test_no_shares_means_everybody_stays_available():
    fixes = drive(FleetConfig(drivers=10, mix=StatusMix(on_trip_share=0.0, offline_share=0.0)), seed=1, rounds=300)
    assert {f.status for f in fixes} == {Status.AVAILABLE}
    assert len(fixes) == 10 * 300


def test_status_mix_solves_odds_and_waiting_time_from_the_shares():
    mix = StatusMix(on_trip_share=0.35, offline_share=0.05, mean_trip_s=600.0, mean_offline_s=300.0)
    q, wait = mix.trip_chance, mix.mean_available_s
    trip_time, offline_time = q * 600.0, (1 - q) * 300.0
    cycle = wait + trip_time + offline_time
    assert trip_time / cycle == pytest.approx(0.35)
    assert offline_time / cycle == pytest.approx(0.05)


def test_status_mix_refuses_shares_that_leave_nobody_available():
    with pytest.raises(ValueError, match="sum must be below 1"):
        StatusMix(on_trip_share=0.6, offline_share=0.4)


def test_a_trip_can_be_assigned_from_outside_and_starts_with_a_pick_up_stop():
    mix = StatusMix(on_trip_share=0.0, offline_share=0.0, pickup_stop_s=(50.0, 50.0))
    calm = DrivingStyle(mean_s_between_stops=1e12)  # no red lights: any stop is the pick-up
    fleet = SimulatedFleet(FleetConfig(drivers=1, style=calm, mix=mix), seed=2)
    fleet.fix_for_slot(0, 0.0)
    fleet.start_trip(fleet.drivers[0], now=0.0, duration_s=120.0)
    fixes = [fleet.fix_for_slot(slot, float(slot)) for slot in range(1, 200)]
    assert fixes[0].status == Status.ON_TRIP and fixes[-1].status == Status.AVAILABLE
    stopped = [f.seq for f in fixes if f.speed_kmh == 0.0]
    assert stopped and stopped[0] < 15, "the driver brakes for the pick-up"
    assert len(stopped) >= 50 and stopped[:50] == list(range(stopped[0], stopped[0] + 50))


def test_open_roads_and_grid_place_cars_inside_any_named_area():
    rng = random.Random(1)
    for area in AREAS.values():
        for roads in (OpenRoads(area, STYLE), StreetGrid(area, STYLE)):
            for _ in range(50):
                car = roads.place(rng)
                assert area.contains(car.lat, car.lon)


def test_a_street_grid_needs_room_for_two_crossings():
    with pytest.raises(ValueError, match="too small for the street grid"):
        StreetGrid(BBox(40.75, -73.99, 40.7503, -73.9897), STYLE).place(random.Random(1))


def test_every_status_the_simulator_sends_is_in_the_schema():
    assert {Status.AVAILABLE, Status.ON_TRIP, Status.OFFLINE} == set(STATUSES)


def test_flags_fall_back_to_environment_variables_then_defaults(monkeypatch):
    monkeypatch.setenv("SIMULATOR_DRIVERS", "42")
    monkeypatch.setenv("SIMULATOR_AREA", "london")
    monkeypatch.setenv("DRIVER_TOPIC", "elsewhere")
    settings = parse_settings(["--interval", "0.5"])
    assert (settings.drivers, settings.interval, settings.area, settings.topic) == (42, 0.5, "london", "elsewhere")
    assert settings.bootstrap_servers == "localhost:9092" and settings.seed is None
    config = fleet_config(settings)
    assert config.area == AREAS["london"] and config.target_rate == 84.0


def test_bbox_flag_replaces_the_named_area():
    assert fleet_config(parse_settings(["--bbox", "51.5,-0.2,51.6,-0.1"])).area == BBox(51.5, -0.2, 51.6, -0.1)


def test_an_area_typed_on_the_command_line_beats_a_bbox_in_the_environment(monkeypatch):
    monkeypatch.setenv("SIMULATOR_BBOX", "51.5,-0.2,51.6,-0.1")
    assert fleet_config(parse_settings([])).area == BBox(51.5, -0.2, 51.6, -0.1)
    assert fleet_config(parse_settings(["--area", "sf"])).area == AREAS["sf"]


def test_ids_longer_than_the_schema_allows_are_refused():
    settings = parse_settings(["--id-prefix", "x" * 50, "--first-id", str(10**15)])
    with pytest.raises(UsageError, match="longer than 64"):
        fleet_config(settings)
