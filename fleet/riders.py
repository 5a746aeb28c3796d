"""Riders as the map shows them: each request, its answer, and where the ride stands now.

Pure and single-threaded, like :mod:`fleet.state`. The dashboard feeds it the requests of
``ride-requests`` and the answers of ``ride-matches`` (in any order: an answer may be read before
its request), and once a second asks it to look at the matched drivers' recent fixes
(:meth:`Riders.check_pickups`) and to forget what is over (:meth:`Riders.sweep`).

A ride is, in turn:

- ``waiting``: requested, no answer yet;
- ``en_route``: matched, the driver is on its way;
- ``picked_up``: a fix of the matched driver taken at or after the match lies within
  :data:`PICKUP_RADIUS_M` of the pick-up point;
- ``no_driver``: the matcher found no driver.

Picked-up and no-driver rides stay :data:`KEEP_ENDED_S` (so a page can say how a ride ended),
then are forgotten; so are requests never answered within :data:`WAITING_MAX_S` (no matcher runs)
and matches whose driver never arrived (see :meth:`Ride.en_route_limit_s`). At most
``max_rides`` are held: past it the oldest are forgotten first.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fleet.geo import haversine_m
from fleet.rides import MATCHED, RideMatch, RideRequest

WAITING = "waiting"
EN_ROUTE = "en_route"
PICKED_UP = "picked_up"
NO_DRIVER = "no_driver"
STATES = (WAITING, EN_ROUTE, PICKED_UP, NO_DRIVER)
ACTIVE = (WAITING, EN_ROUTE)

PICKUP_RADIUS_M = 50.0
WINDOW_S = 60.0  # "in the last minute" of the counts
KEEP_ENDED_S = 15.0
# The matcher answers within its rider's wait (30 s by default); a request unanswered for this
# long means no matcher is running, and the map stops showing it.
WAITING_MAX_S = 300.0
# A driver that has not reached its rider within this long plus a few times the ETA is not
# coming (or reached it while the dashboard was not looking: a restarted dashboard has only its
# drivers' last 50 fixes).
EN_ROUTE_SLACK_S = 120.0
EN_ROUTE_ETA_FACTOR = 3.0
MAX_RIDES = 10_000
# Answered request ids remembered after their ride is forgotten, so that a request read after its
# answer (another partition, another topic) or a repeated answer does not bring the ride back.
REMEMBER_ANSWERED = 50_000
# Matched / no-driver events kept for the one-minute counts (a busy minute at 1,000 requests/s).
MAX_WINDOW_EVENTS = 100_000

# Where a driver has been: (latitude, longitude, fix timestamp) triples, oldest first.
Track = Callable[[str], Iterable[tuple[float, float, float] | list[float]]]


class Ride:
    """One request and what became of it."""

    __slots__ = (
        "request_id",
        "rider_id",
        "latitude",
        "longitude",
        "requested_at",
        "state",
        "driver_id",
        "answered_at",
        "distance_m",
        "eta_s",
        "ended_at",
    )

    def __init__(self, request_id: str, rider_id: str, latitude: float, longitude: float, requested_at: float):
        self.request_id = request_id
        self.rider_id = rider_id
        self.latitude = latitude
        self.longitude = longitude
        self.requested_at = requested_at
        self.state = WAITING
        self.driver_id: str | None = None
        self.answered_at: float | None = None  # when the matcher decided
        self.distance_m: float | None = None
        self.eta_s: int | None = None
        self.ended_at: float | None = None  # picked up, or answered no_driver

    def en_route_limit_s(self) -> float:
        return EN_ROUTE_SLACK_S + EN_ROUTE_ETA_FACTOR * (self.eta_s or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "rider_id": self.rider_id,
            "lat": self.latitude,
            "lon": self.longitude,
            "state": self.state,
            "requested_at": self.requested_at,
            "driver_id": self.driver_id,
            "answered_at": self.answered_at,
            "distance_m": self.distance_m,
            "eta_s": self.eta_s,
            "ended_at": self.ended_at,
        }


class Riders:
    """The rides of the last few minutes, bounded, with the counts the panel shows."""

    def __init__(self, max_rides: int = MAX_RIDES) -> None:
        if max_rides < 1:
            raise ValueError("max_rides must be at least 1")
        self.max_rides = max_rides
        self._rides: OrderedDict[str, Ride] = OrderedDict()  # oldest heard first
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._matched: deque[tuple[float, float]] = deque(maxlen=MAX_WINDOW_EVENTS)  # (answered_at, time to match)
        self._no_driver: deque[float] = deque(maxlen=MAX_WINDOW_EVENTS)
        self.matched_total = 0
        self.no_driver_total = 0
        self.picked_up_total = 0
        self.expired = 0  # forgotten while still waiting or en route
        self.evicted = 0  # forgotten by the max_rides bound
        self.version = 0  # +1 on every change a page would see

    def __len__(self) -> int:
        return len(self._rides)

    def __iter__(self) -> Iterator[Ride]:
        return iter(self._rides.values())

    def get(self, request_id: str) -> Ride | None:
        return self._rides.get(request_id)

    def add_request(self, request: RideRequest, now: float) -> bool:
        """Hold a new request; False when it is known, already answered, or too old to be waiting still."""
        rid = request.request_id
        if rid in self._rides or rid in self._answered or now - request.timestamp > WAITING_MAX_S:
            return False
        self._hold(Ride(rid, request.rider_id, request.latitude, request.longitude, request.timestamp))
        return True

    def add_match(self, match: RideMatch) -> bool:
        """Take the one answer to a request (its request may come later, or never); False for a repeat."""
        rid = match.request_id
        if rid in self._answered:
            return False
        self._remember_answered(rid)
        ride = self._rides.get(rid)
        if ride is None:  # the answer carries the request's fields
            ride = Ride(rid, match.rider_id, match.latitude, match.longitude, match.requested_at)
            self._hold(ride)
        ride.answered_at = match.timestamp
        if match.outcome == MATCHED:
            ride.state = EN_ROUTE
            ride.driver_id = match.driver_id
            ride.distance_m = match.distance_m
            ride.eta_s = match.eta_s
            self._matched.append((match.timestamp, match.time_to_match_s))
            self.matched_total += 1
        else:
            ride.state = NO_DRIVER
            ride.ended_at = match.timestamp
            self._no_driver.append(match.timestamp)
            self.no_driver_total += 1
        self.version += 1
        return True

    def check_pickups(self, track: Track, now: float) -> int:
        """Mark picked up every en-route ride whose driver came within reach after the match."""
        picked = 0
        for ride in self._rides.values():
            if ride.state != EN_ROUTE or ride.driver_id is None:
                continue
            since = ride.answered_at if ride.answered_at is not None else ride.requested_at
            for lat, lon, ts in track(ride.driver_id):
                if ts >= since and haversine_m(lat, lon, ride.latitude, ride.longitude) <= PICKUP_RADIUS_M:
                    ride.state = PICKED_UP
                    ride.ended_at = max(ts, since)
                    picked += 1
                    break
        if picked:
            self.picked_up_total += picked
            self.version += 1
        return picked

    def sweep(self, now: float) -> int:
        """Forget ended rides after a while, and waiting or en-route ones nobody will finish."""
        over = [ride.request_id for ride in self._rides.values() if _is_over(ride, now)]
        for rid in over:
            ride = self._rides.pop(rid)
            if ride.state in ACTIVE:
                self.expired += 1
        if over:
            self.version += 1
        return len(over)

    def counts(self, now: float) -> dict[str, Any]:
        """Riders by state now, and what the matcher answered in the last minute."""
        cutoff = now - WINDOW_S
        # Not sorted by time (answers of several partitions interleave): filter, don't pop.
        self._matched = deque((e for e in self._matched if e[0] >= cutoff), maxlen=MAX_WINDOW_EVENTS)
        self._no_driver = deque((at for at in self._no_driver if at >= cutoff), maxlen=MAX_WINDOW_EVENTS)
        recent = [seconds for _, seconds in self._matched]
        by_state = dict.fromkeys(STATES, 0)
        for ride in self._rides.values():
            by_state[ride.state] += 1
        return {
            "waiting": by_state[WAITING],
            "en_route": by_state[EN_ROUTE],
            "matched_60s": len(recent),
            "no_driver_60s": len(self._no_driver),
            "median_match_s": round(statistics.median(recent), 3) if recent else None,
            "matched_total": self.matched_total,
            "no_driver_total": self.no_driver_total,
            "picked_up_total": self.picked_up_total,
        }

    def newest(self, limit: int) -> tuple[list[Ride], int]:
        """The ``limit`` rides heard last (oldest first), and how many older ones were left out."""
        rides = list(self._rides.values())
        return rides[-limit:], max(0, len(rides) - limit)

    def _hold(self, ride: Ride) -> None:
        self._rides[ride.request_id] = ride
        while len(self._rides) > self.max_rides:
            self._rides.popitem(last=False)
            self.evicted += 1
        self.version += 1

    def _remember_answered(self, request_id: str) -> None:
        self._answered[request_id] = None
        if len(self._answered) > REMEMBER_ANSWERED:
            self._answered.popitem(last=False)


def _is_over(ride: Ride, now: float) -> bool:
    if ride.ended_at is not None:
        return now - ride.ended_at > KEEP_ENDED_S
    if ride.state == WAITING:
        return now - ride.requested_at > WAITING_MAX_S
    return now - (ride.answered_at or ride.requested_at) > ride.en_route_limit_s()


def riders_json(riders: Riders, now: float, limit: int) -> dict[str, Any]:
    """What a page needs to draw the riders and fill the panel: the newest rides and the counts."""
    rides, omitted = riders.newest(limit)
    return {"riders": [ride.to_json() for ride in rides], "omitted": omitted, "counts": riders.counts(now)}
