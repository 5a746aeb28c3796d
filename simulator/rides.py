"""Riders for the simulated fleet: when they ask, where they stand, and a matched driver's ride.

Pure (no clock, no I/O): times are seconds since the start of the run, randomness comes from the
``random.Random`` passed in. A ride goes ``to_pickup`` (driving to the rider), ``pickup_stop``
(the rider gets in), ``to_destination``, ``dropoff_stop``, then ``done``; the driver reports
``on_trip`` from the match until the end of the drop-off stop, then ``available`` again.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from fleet.geo import destination, haversine_m
from fleet.rides import MATCHED, RideMatch, RideRequest
from simulator.motion import Car, Roads

TO_PICKUP, PICKUP_STOP, TO_DESTINATION, DROPOFF_STOP, DONE = (
    "to_pickup",
    "pickup_stop",
    "to_destination",
    "dropoff_stop",
    "done",
)
# A driver this close to the rider (or the destination) has arrived and stops.
ARRIVE_M = 50.0
# Riders ask near a free driver (where drivers wait, there is demand) this often, else anywhere.
NEAR_DRIVER_SHARE = 0.8
NEAR_DRIVER_M = (100.0, 1500.0)
TRIP_M = (1000.0, 8000.0)
PLACE_TRIES = 30
# A request the matcher has not answered after this long is forgotten (the matcher is down, or
# was started with a longer wait than any rider would accept).
FORGET_AFTER_S = 300.0


@dataclass(frozen=True)
class RideTiming:
    """How long a driver stands to let a rider in and out, seconds (uniform between the two)."""

    pickup_stop_s: tuple[float, float] = (8.0, 20.0)
    dropoff_stop_s: tuple[float, float] = (5.0, 15.0)


@dataclass(slots=True)
class Ride:
    """One matched ride carried out by one driver."""

    request_id: str
    rider_id: str
    pickup: tuple[float, float]
    destination: tuple[float, float]
    pickup_stop_s: float
    dropoff_stop_s: float
    matched_at: float
    phase: str = TO_PICKUP
    picked_up_at: float | None = None
    dropped_off_at: float | None = None

    @property
    def goal(self) -> tuple[float, float] | None:
        """Where the driver heads now: the rider until picked up, then the destination."""
        if self.phase in (TO_PICKUP, PICKUP_STOP):
            return self.pickup
        if self.phase in (TO_DESTINATION, DROPOFF_STOP):
            return self.destination
        return None

    def update(self, car: Car, now: float) -> bool:
        """Move the ride on after the car drove; True when its goal changed (the caller re-routes)."""
        if self.phase == TO_PICKUP and haversine_m(car.lat, car.lon, *self.pickup) <= ARRIVE_M:
            self.phase = PICKUP_STOP
            car.stop_for(self.pickup_stop_s)
        elif self.phase == PICKUP_STOP and car.stop_left == 0.0:
            self.phase, self.picked_up_at = TO_DESTINATION, now
            return True
        elif self.phase == TO_DESTINATION and haversine_m(car.lat, car.lon, *self.destination) <= ARRIVE_M:
            self.phase = DROPOFF_STOP
            car.stop_for(self.dropoff_stop_s)
        elif self.phase == DROPOFF_STOP and car.stop_left == 0.0:
            self.phase, self.dropped_off_at = DONE, now
            return True
        return False


def new_ride(
    match: RideMatch, pickup: tuple[float, float], roads: Roads, timing: RideTiming, rng: random.Random, now: float
) -> Ride:
    """The ride a matched driver carries out: to ``pickup``, then to a destination 1-8 km away."""
    return Ride(
        request_id=match.request_id,
        rider_id=match.rider_id,
        pickup=pickup,
        destination=place(roads, rng, near=pickup, distance_m=TRIP_M),
        pickup_stop_s=rng.uniform(*timing.pickup_stop_s),
        dropoff_stop_s=rng.uniform(*timing.dropoff_stop_s),
        matched_at=now,
    )


def place(
    roads: Roads, rng: random.Random, near: tuple[float, float] | None, distance_m: tuple[float, float]
) -> tuple[float, float]:
    """A point by the road ``distance_m`` from ``near`` when one fits in the area, else anywhere in it."""
    if near is not None:
        for _ in range(PLACE_TRIES):
            lat, lon = destination(*near, rng.uniform(0.0, 360.0), rng.uniform(*distance_m))
            spot = roads.roadside(lat, lon)
            if spot is not None:
                return spot
    return anywhere(roads, rng)


def anywhere(roads: Roads, rng: random.Random) -> tuple[float, float]:
    """A point by a road anywhere in the area."""
    area = roads.area
    for _ in range(PLACE_TRIES):
        spot = roads.roadside(rng.uniform(area.min_lat, area.max_lat), rng.uniform(area.min_lon, area.max_lon))
        if spot is not None:
            return spot
    car = roads.place(rng)  # a car's starting point is always by a road inside the area
    return car.lat, car.lon


class RiderSchedule:
    """When riders ask: a Poisson process of ``per_minute`` requests a minute on average.

    Gaps between requests are exponential, as for independent people, so the map shows bursts
    and lulls rather than a metronome; the count over many minutes averages ``per_minute``.
    """

    def __init__(self, per_minute: float, rng: random.Random) -> None:
        self.mean_gap_s = 60.0 / per_minute if per_minute > 0 else math.inf
        self.rng = rng
        self.next_at = self._gap()

    def _gap(self) -> float:
        return math.inf if math.isinf(self.mean_gap_s) else self.rng.expovariate(1.0 / self.mean_gap_s)

    def due(self, now: float) -> int:
        """How many requests fall due by ``now`` (seconds since the start) that were not due before."""
        count = 0
        while self.next_at <= now:
            count += 1
            self.next_at += self._gap()
        return count


@dataclass
class RideCounts:
    requested: int = 0
    request_failures: int = 0
    matched: int = 0
    no_driver: int = 0
    # Matched to a driver this simulator does not drive, or to one already on a ride of ours.
    not_ours: int = 0
    busy: int = 0


@dataclass
class RideBook:
    """The requests this run made and is waiting on, by request id, and what became of them.

    Only answers to our own requests count: ``ride-matches`` also carries other riders' answers.
    """

    run_id: str
    pending: dict[str, tuple[RideRequest, float]] = field(default_factory=dict)
    counts: RideCounts = field(default_factory=RideCounts)
    issued: int = 0

    def new_request(self, spot: tuple[float, float], timestamp: float, now: float) -> RideRequest:
        """A request with an id unique across runs and processes (the run id is a fresh UUID's)."""
        self.issued += 1
        number = self.issued
        request = RideRequest(
            request_id=f"sim-{self.run_id}-{number:06d}",
            rider_id=f"rider-{self.run_id}-{number:06d}",
            latitude=spot[0],
            longitude=spot[1],
            timestamp=timestamp,
        )
        self.pending[request.request_id] = (request, now)
        self.counts.requested += 1
        return request

    def answer(self, match: RideMatch) -> RideRequest | None:
        """Our request this answers (counted), or None when it is not ours or already answered."""
        entry = self.pending.pop(match.request_id, None)
        if entry is None:
            return None
        if match.outcome == MATCHED:
            self.counts.matched += 1
        else:
            self.counts.no_driver += 1
        return entry[0]

    def forget_unanswered(self, now: float) -> int:
        """Drop requests older than FORGET_AFTER_S; how many."""
        old = [rid for rid, (_, at) in self.pending.items() if now - at > FORGET_AFTER_S]
        for request_id in old:
            del self.pending[request_id]
        return len(old)
