"""Matching without Kafka: reservations, waiting riders, answers given once, and taking them back."""

import random

import pytest

from fleet.geo import destination
from fleet.rides import MATCHED, NO_DRIVER, RideMatch, RideRequest, area_of
from fleet.schema import SEQ_RESTART_S, Fix
from matcher.matching import RETRY_BUDGET, MatchConfig, Matcher, Source, eta_s

T0 = 1_800_000_000.0
RIDER = (40.758, -73.9855)  # Times Square
CONFIG = MatchConfig(max_wait_s=30, reservation_timeout_s=20, driver_max_age_s=15)


class Clock:
    """Numbers requests and their offsets, so each test reads like a story."""

    def __init__(self) -> None:
        self.offset = 0

    def request(self, request_id: str, at: float, where=RIDER, partition: int = 0):
        self.offset += 1
        request = RideRequest(request_id, f"rider-{request_id}", where[0], where[1], at)
        return request, Source(partition, self.offset, int(at * 1000))


def fix(
    driver_id: str, at: float, metres_north: float = 200.0, status: str | None = "available", seq: int | None = None
) -> Fix:
    lat, lon = destination(*RIDER, 0, metres_north)
    return Fix(driver_id, lat, lon, at, status=status, seq=seq)


@pytest.fixture
def story():
    return Matcher(CONFIG), Clock()


def test_the_nearest_free_driver_is_matched_with_distance_and_eta(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("far", T0, 900), T0)
    matcher.pool.on_fix(fix("near", T0, 300), T0)
    answer = matcher.submit(*clock.request("r1", T0 + 1), T0 + 1.5)
    assert (answer.outcome, answer.driver_id) == (MATCHED, "near")
    assert answer.distance_m == pytest.approx(300, abs=0.01)
    assert answer.eta_s == eta_s(answer.distance_m, CONFIG.city_speed_kmh) == 44  # 300 m at 25 km/h
    assert answer.time_to_match_s == pytest.approx(0.5)
    assert (answer.latitude, answer.longitude) == RIDER


def test_a_matched_driver_is_not_given_to_the_next_rider_who_waits_then_gets_no_driver(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    assert matcher.submit(*clock.request("r1", T0), T0).driver_id == "d1"
    assert matcher.submit(*clock.request("r2", T0), T0) is None
    assert list(matcher.waiting) == ["r2"]
    assert matcher.tick(T0 + 29.9) == []
    [answer] = matcher.tick(T0 + 30.0)
    assert (answer.request_id, answer.outcome, answer.driver_id) == ("r2", NO_DRIVER, None)
    assert not matcher.waiting


def test_a_reservation_that_never_becomes_a_trip_is_released_to_a_waiting_rider(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    matcher.submit(*clock.request("r1", T0), T0)
    matcher.submit(*clock.request("r2", T0 + 5), T0 + 5)
    matcher.pool.on_fix(fix("d1", T0 + 10), T0 + 10)  # still "available": the trip did not start
    assert matcher.tick(T0 + 19) == []
    [answer] = matcher.tick(T0 + 20.0)
    assert (answer.request_id, answer.driver_id) == ("r2", "d1")


def test_on_trip_ends_the_reservation_and_the_driver_is_offered_again_once_available(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    matcher.submit(*clock.request("r1", T0), T0)
    matcher.pool.on_fix(fix("d1", T0 + 2, status="on_trip"), T0 + 2)
    assert "d1" not in matcher.pool.reservations
    assert matcher.submit(*clock.request("r2", T0 + 3), T0 + 3) is None  # on a trip: not free
    matcher.pool.on_fix(fix("d1", T0 + 8, status="available"), T0 + 8)
    [answer] = matcher.tick(T0 + 8)
    assert (answer.request_id, answer.driver_id) == ("r2", "d1")


def test_an_on_trip_fix_taken_before_the_match_does_not_end_the_reservation(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    matcher.submit(*clock.request("r1", T0 + 5), T0 + 5)
    # A fix taken before the match arrives late: it is about an earlier trip; d1 is still held for r1.
    matcher.pool.on_fix(fix("d1", T0 + 4, status="on_trip"), T0 + 6)
    assert matcher.pool.reservations["d1"].request_id == "r1"


@pytest.mark.parametrize("status, offered", [(None, True), ("available", True), ("on_trip", False), ("offline", False)])
def test_only_available_drivers_or_drivers_without_a_status_are_offered(story, status, offered):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0, status=status), T0)
    answer = matcher.submit(*clock.request("r1", T0), T0)
    assert (answer is not None) == offered


def test_a_driver_whose_latest_fix_is_too_old_is_not_offered(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    assert matcher.submit(*clock.request("r1", T0 + 15.1), T0 + 15.1) is None
    matcher.pool.on_fix(fix("d1", T0 + 16), T0 + 16)
    assert matcher.tick(T0 + 16)[0].driver_id == "d1"


def test_an_older_fix_never_moves_a_driver_back(story):
    matcher, _ = story
    matcher.pool.on_fix(fix("d1", T0 + 5, 100), T0 + 5)
    matcher.pool.on_fix(fix("d1", T0 + 4, 4000, status="offline"), T0 + 5)
    driver = matcher.pool.drivers["d1"]
    assert (driver.fix_ts, driver.status) == (T0 + 5, "available")


def test_a_request_whose_wait_is_over_when_read_gets_no_driver_at_once(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0 + 40), T0 + 40)
    answer = matcher.submit(*clock.request("r1", T0), T0 + 40)
    assert answer.outcome == NO_DRIVER
    assert "d1" not in matcher.pool.reservations


def test_a_request_read_twice_is_answered_once(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    request, source = clock.request("r1", T0)
    assert matcher.submit(request, source, T0) is not None
    assert matcher.submit(request, Source(0, source.offset + 7, source.timestamp_ms), T0) is None
    waiting_request, waiting_source = clock.request("r2", T0)
    assert matcher.submit(waiting_request, waiting_source, T0) is None
    assert matcher.submit(waiting_request, waiting_source, T0) is None
    assert list(matcher.waiting) == ["r2"]


def test_an_answer_committed_by_another_matcher_reserves_its_driver_and_answers_the_request(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    other = RideMatch("r9", "rider-9", MATCHED, T0, T0, *RIDER, "d1", 200.0, 29, *RIDER)
    matcher.on_committed(other, T0 + 1)
    assert matcher.is_answered("r9")
    assert matcher.submit(*clock.request("r1", T0 + 1), T0 + 1) is None
    assert matcher.submit(*clock.request("r9", T0 + 1), T0 + 1) is None
    assert list(matcher.waiting) == ["r1"]


def test_a_stale_committed_match_reserves_nothing(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0 + 30), T0 + 30)
    old = RideMatch("r9", "rider-9", MATCHED, T0, T0, *RIDER, "d1", 200.0, 29, *RIDER)
    matcher.on_committed(old, T0 + 30)  # its 20 s reservation ran out
    assert matcher.submit(*clock.request("r1", T0 + 30), T0 + 30).driver_id == "d1"


def test_rollback_takes_back_the_answers_and_reservations_since_the_checkpoint(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    matcher.pool.on_fix(fix("d2", T0, 400), T0)
    assert matcher.submit(*clock.request("r1", T0), T0).driver_id == "d1"
    matcher.checkpoint()
    assert matcher.submit(*clock.request("r2", T0), T0).driver_id == "d2"
    matcher.submit(*clock.request("r3", T0), T0)
    matcher.rollback(T0)
    assert matcher.is_answered("r1") and not matcher.is_answered("r2")
    assert set(matcher.pool.reservations) == {"d1"}
    assert not matcher.waiting
    assert matcher.commit_positions() == {}
    assert matcher.submit(*clock.request("r2", T0), T0).driver_id == "d2"  # read again, answered again


def test_the_offset_to_commit_is_the_oldest_waiting_request_else_the_next_one(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0), T0)
    first = clock.request("r1", T0, partition=0)
    matcher.submit(*first, T0)
    waiting = clock.request("r2", T0 + 1, partition=0)
    matcher.submit(*waiting, T0 + 1)
    matcher.submit(*clock.request("r3", T0 + 2, partition=0), T0 + 2)
    other = clock.request("r4", T0 + 3, partition=1)
    matcher.pool.on_fix(fix("d2", T0 + 3), T0 + 3)
    matcher.submit(*other, T0 + 3)
    assert matcher.commit_positions() == {
        0: (waiting[1].offset, waiting[1].timestamp_ms),
        1: (other[1].offset + 1, other[1].timestamp_ms),
    }
    assert matcher.read_to(0) == waiting[1].offset + 2
    matcher.forget_partitions([0])
    assert list(matcher.commit_positions()) == [1] and not matcher.waiting


def test_drivers_outside_the_areas_this_matcher_owns_are_not_offered(story):
    matcher, clock = story
    berlin = (52.52, 13.40)
    matcher.pool.set_ownership(lambda area: area == "berlin", T0)
    matcher.pool.on_fix(fix("nyc-driver", T0), T0)
    assert matcher.submit(*clock.request("r1", T0), T0) is None
    matcher.pool.on_fix(Fix("berlin-driver", *destination(*berlin, 90, 100), T0, status="available"), T0)
    assert matcher.submit(*clock.request("r2", T0, where=berlin), T0).driver_id == "berlin-driver"
    assert area_of(*RIDER) == "nyc"


def test_a_driver_crossing_into_an_owned_area_waits_out_the_handover(story):
    matcher, clock = story
    matcher.pool.set_ownership(lambda area: area == "nyc", T0)
    outside = (40.758, -74.5)  # west of the nyc area: tile:40:-75
    matcher.pool.on_fix(Fix("d1", *outside, T0, status="available"), T0)
    matcher.pool.on_fix(fix("d1", T0 + 1), T0 + 1)
    assert matcher.submit(*clock.request("r1", T0 + 1), T0 + 1) is None
    handover = CONFIG.handover_s
    assert matcher.tick(T0 + 1 + handover - 0.1) == []
    matcher.pool.on_fix(fix("d1", T0 + handover), T0 + handover)  # keeps reporting
    [answer] = matcher.tick(T0 + 1 + handover + SWEEP)
    assert answer.driver_id == "d1"


SWEEP = 1.0


def test_old_answers_are_forgotten(story):
    matcher, clock = story
    matcher.submit(*clock.request("r1", T0 - 100), T0)
    matcher.on_committed(RideMatch("r2", "x", NO_DRIVER, T0 + 50, T0, *RIDER), T0 + 50)
    matcher.forget_answers_before(T0 + 10)
    assert not matcher.is_answered("r1") and matcher.is_answered("r2")


@pytest.mark.parametrize(
    "caps",
    [{}, {"max_drivers": 150, "max_waiting": 20}],  # the second evicts drivers and pushes riders out all along
    ids=["default caps", "small caps"],
)
def test_a_thousand_riders_and_two_hundred_drivers_no_driver_ever_holds_two_riders(caps):
    """Riders arrive for 33 s; half the matched drivers start a 20 s trip, the others never show up."""
    rnd = random.Random(7)
    matcher = Matcher(MatchConfig(max_wait_s=10, reservation_timeout_s=5, driver_max_age_s=15, **caps))
    drivers = {f"d{n:03d}": rnd.uniform(0, 3000) for n in range(200)}
    trip_ends: dict[str, float] = {}
    busy_until: dict[str, float] = {}  # when each driver may take its next rider at the earliest
    answers: dict[str, RideMatch] = {}
    sent = 0
    for step in range(600):
        now = T0 + step * 0.1
        if step % 10 == 0:  # every driver reports once a second
            for driver_id, north in drivers.items():
                status = "on_trip" if trip_ends.get(driver_id, 0) > now else "available"
                matcher.pool.on_fix(fix(driver_id, now, north, status), now)
        new = []
        for _ in range(3):  # 30 riders a second: more than 200 drivers can serve
            if sent < 1000:
                request = RideRequest(f"r{sent}", "rider", *destination(*RIDER, rnd.uniform(0, 360), 500), now)
                answer = matcher.submit(request, Source(0, sent, int(now * 1000)), now)
                new += [answer] if answer else []
                sent += 1
        new += matcher.tick(now)
        for answer in new:
            assert answer.request_id not in answers, "answered twice"
            answers[answer.request_id] = answer
            if answer.outcome == MATCHED:
                driver_id = answer.driver_id
                assert now >= busy_until.get(driver_id, 0), f"{driver_id} given a second rider while busy"
                if rnd.random() < 0.5:
                    trip_ends[driver_id] = busy_until[driver_id] = now + 20
                else:
                    busy_until[driver_id] = now + 5  # the reservation runs out
    assert len(answers) == 1000
    outcomes = [a.outcome for a in answers.values()]
    assert outcomes.count(MATCHED) > 200 and outcomes.count(NO_DRIVER) > 0
    assert (matcher.pool.evicted > 0 and matcher.evicted_waiting > 0) == bool(caps)


def test_each_round_offers_drivers_to_a_bounded_number_of_the_oldest_waiting_riders(story):
    matcher, clock = story
    for n in range(RETRY_BUDGET):  # a crowd waiting where no driver is in reach
        matcher.submit(*clock.request(f"crowd-{n:04d}", T0), T0)
    elsewhere = destination(*RIDER, 90, 20_000)
    matcher.submit(*clock.request("young", T0 + 10, where=elsewhere), T0 + 10)
    matcher.pool.on_fix(Fix("d1", *destination(*elsewhere, 0, 100), T0 + 11, status="available"), T0 + 11)
    assert matcher.tick(T0 + 11) == []  # the round's budget went to the crowd
    matcher.pool.on_fix(Fix("d1", *destination(*elsewhere, 0, 100), T0 + 29, status="available"), T0 + 29)
    answers = matcher.tick(T0 + 30)  # the crowd's wait is over; the young rider's turn comes
    assert [a.outcome for a in answers].count(NO_DRIVER) == RETRY_BUDGET
    assert answers[-1].request_id == "young" and answers[-1].driver_id == "d1"


# ---- seq, and bounds on drivers and waiting riders


def test_a_fix_with_a_smaller_seq_is_ignored_within_the_restart_window_and_taken_after_it(story):
    matcher, _ = story
    matcher.pool.on_fix(fix("d1", T0, 100, seq=7), T0)
    matcher.pool.on_fix(fix("d1", T0 + 5, 4000, status="offline", seq=3), T0 + 5)  # late, though newer
    driver = matcher.pool.drivers["d1"]
    assert (driver.fix_ts, driver.status, driver.seq) == (T0, "available", 7)
    restarted = T0 + SEQ_RESTART_S + 1  # the producer restarted and counts from 0 again
    matcher.pool.on_fix(fix("d1", restarted, 300, seq=0), restarted)
    assert (driver.fix_ts, driver.seq) == (restarted, 0)


def test_the_same_fix_read_again_changes_nothing_but_a_larger_seq_at_the_same_time_is_taken(story):
    matcher, clock = story
    matcher.pool.on_fix(fix("d1", T0, 100, seq=1), T0)
    matcher.pool.on_fix(fix("d1", T0, 100, status="offline"), T0)  # no seq: a re-read record
    assert matcher.pool.drivers["d1"].status == "available"
    matcher.pool.on_fix(fix("d1", T0, 100, status="offline", seq=2), T0)
    assert matcher.pool.drivers["d1"].status == "offline"
    assert matcher.submit(*clock.request("r1", T0), T0) is None


def test_past_max_drivers_the_longest_silent_driver_is_evicted_and_counted():
    matcher = Matcher(MatchConfig(max_drivers=3))
    fleet = matcher.pool
    for n, driver_id in enumerate(["d1", "d2", "d3"]):
        fleet.on_fix(fix(driver_id, T0 + n, 100 * (n + 1)), T0 + n)
    fleet.on_fix(fix("d1", T0 + 3, 100), T0 + 3)  # d1 reports again: d2 is now the longest silent
    fleet.on_fix(fix("d4", T0 + 4, 400), T0 + 4)
    assert list(fleet.drivers) == ["d3", "d1", "d4"] and fleet.evicted == 1
    assert "d2" not in fleet.index and len(fleet.index) == 3


def test_a_reserved_driver_is_never_evicted_and_a_new_one_is_not_held_when_every_driver_is_reserved():
    matcher, clock = Matcher(MatchConfig(max_drivers=2)), Clock()
    fleet = matcher.pool
    fleet.on_fix(fix("d1", T0, 100), T0)
    fleet.on_fix(fix("d2", T0, 200), T0)
    assert matcher.submit(*clock.request("r1", T0), T0).driver_id == "d1"
    fleet.on_fix(fix("d3", T0 + 1, 300), T0 + 1)  # evicts d2, not the reserved d1
    assert set(fleet.drivers) == {"d1", "d3"} and fleet.evicted == 1
    assert matcher.submit(*clock.request("r2", T0 + 1), T0 + 1).driver_id == "d3"
    fleet.on_fix(fix("d4", T0 + 2, 400), T0 + 2)
    assert set(fleet.drivers) == {"d1", "d3"} and fleet.evicted == 2
    assert "d4" not in fleet.index


def test_past_max_waiting_the_oldest_rider_is_answered_no_driver_once_by_the_next_tick():
    matcher, clock = Matcher(MatchConfig(max_waiting=2)), Clock()
    first = clock.request("r1", T0)
    for request in (first, clock.request("r2", T0 + 1), clock.request("r3", T0 + 2)):
        assert matcher.submit(*request, T0 + 2) is None
    assert list(matcher.waiting) == ["r2", "r3"]
    assert matcher.commit_positions() == {0: (first[1].offset, first[1].timestamp_ms)}  # r1 is not answered yet
    assert matcher.submit(*first, T0 + 2) is None  # read again meanwhile: still answered once
    [answer] = matcher.tick(T0 + 2)
    assert (answer.request_id, answer.outcome, matcher.evicted_waiting) == ("r1", NO_DRIVER, 1)
    assert matcher.is_answered("r1") and matcher.commit_positions()[0][0] == first[1].offset + 1
    assert matcher.tick(T0 + 2.5) == [] and matcher.tick(T0 + 31) != []  # the others' waits run out as usual
    assert matcher.evicted_waiting == 1


def test_a_rider_pushed_out_then_rolled_back_is_not_answered_and_is_read_again():
    matcher, clock = Matcher(MatchConfig(max_waiting=1)), Clock()
    first = clock.request("r1", T0)
    matcher.submit(*first, T0)
    matcher.submit(*clock.request("r2", T0), T0)
    matcher.rollback(T0)
    assert matcher.tick(T0) == [] and not matcher.is_answered("r1")
    assert matcher.submit(*first, T0) is None and list(matcher.waiting) == ["r1"]


def test_a_rider_pushed_out_but_answered_by_another_matcher_is_not_answered_again():
    matcher, clock = Matcher(MatchConfig(max_waiting=1)), Clock()
    matcher.submit(*clock.request("r1", T0), T0)
    matcher.submit(*clock.request("r2", T0), T0)
    matcher.on_committed(RideMatch("r1", "rider-r1", NO_DRIVER, T0, T0, *RIDER), T0)
    assert matcher.tick(T0) == [] and matcher.evicted_waiting == 0


def test_a_crowd_of_riders_past_max_waiting_keeps_the_deadline_heap_bounded():
    matcher, clock = Matcher(MatchConfig(max_waiting=10)), Clock()
    for n in range(500):
        matcher.submit(*clock.request(f"r{n}", T0), T0)
        assert len(matcher.waiting) <= 10 and len(matcher._deadlines) <= 2 * 10 + 1
    assert len(matcher.tick(T0)) == 490 and matcher.evicted_waiting == 490


@pytest.mark.parametrize(
    "field, value", [("max_drivers", 0), ("max_waiting", -1), ("max_waiting", 2.5), ("max_drivers", True)]
)
def test_caps_must_be_positive_integers(field, value):
    with pytest.raises(ValueError, match=field):
        MatchConfig(**{field: value})


@pytest.mark.parametrize("pole", [90.0, -90.0])
def test_a_rider_at_a_pole_waits_like_any_other_and_is_matched_with_a_driver_across_it(story, pole):
    matcher, clock = story
    for n in range(2000):  # a city full of drivers far away
        matcher.pool.on_fix(fix(f"city-{n}", T0, n), T0)
    assert matcher.submit(*clock.request("r1", T0, where=(pole, 0.0)), T0) is None
    across = destination(pole, 180.0, 0, 300)
    matcher.pool.on_fix(Fix("polar", *across, T0 + 1, status="available"), T0 + 1)
    [answer] = matcher.tick(T0 + 1)
    assert (answer.driver_id, round(answer.distance_m)) == ("polar", 300)
