"""The whole fleet on a schedule: which driver reports when, where it is, and in what status.

Fixes are spread evenly over the interval: slot ``k`` belongs to driver ``k % N`` and falls
``k * interval / N`` seconds after the start. Between two of its slots a driver moves exactly one
interval, so positions depend on the seed and the flags only, never on how late the machine is
(unless riders are matched to drivers: when an answer arrives depends on the clock).

A driver matched to a rider (:meth:`SimulatedFleet.assign_ride`) carries out the ride (``simulator.rides``)
and is left alone by the random status mix until it drops the rider off.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from fleet.geo import AREAS, BBox
from fleet.rides import RideMatch
from fleet.schema import Fix, Status
from simulator.motion import MANHATTAN_BEARING, Car, DrivingStyle, OpenRoads, Roads, StreetGrid
from simulator.rides import DONE, NEAR_DRIVER_M, NEAR_DRIVER_SHARE, Ride, RideTiming, anywhere, new_ride, place
from simulator.status import StatusMix


@dataclass(frozen=True)
class FleetConfig:
    drivers: int = 200
    interval_s: float = 1.0
    area: BBox = AREAS["nyc"]
    id_prefix: str = "drv-"
    first_id: int = 1
    street_grid: bool = False
    grid_bearing: float = MANHATTAN_BEARING
    style: DrivingStyle = field(default_factory=DrivingStyle)
    mix: StatusMix = field(default_factory=StatusMix)
    timing: RideTiming = field(default_factory=RideTiming)

    def driver_id(self, index: int) -> str:
        return f"{self.id_prefix}{self.first_id + index:05d}"

    @property
    def slot_s(self) -> float:
        """Seconds between two consecutive fixes of the fleet."""
        return self.interval_s / self.drivers

    @property
    def target_rate(self) -> float:
        """Fixes per second when every driver reports."""
        return self.drivers / self.interval_s


@dataclass(slots=True)
class SimulatedDriver:
    driver_id: str
    car: Car
    status: str
    status_until: float  # seconds since the start of the run
    seq: int = 0  # fixes sent so far; the next fix carries this number
    ride: Ride | None = None  # the rider this driver is matched to, until the drop-off

    def fix(self, timestamp: float) -> Fix:
        car = self.car
        fix = Fix(self.driver_id, car.lat, car.lon, timestamp, car.heading, car.speed_kmh, self.status, self.seq)
        self.seq += 1
        return fix


class SimulatedFleet:
    """Every driver of a run and the one random generator that moves them all."""

    def __init__(self, config: FleetConfig, seed: int) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.roads: Roads = (
            StreetGrid(config.area, config.style, config.grid_bearing)
            if config.street_grid
            else OpenRoads(config.area, config.style)
        )
        self.drivers = [self._new_driver(i) for i in range(config.drivers)]
        self.by_id = {driver.driver_id: driver for driver in self.drivers}
        self.rides_in_progress = 0
        self.rides_completed = 0

    def _new_driver(self, index: int) -> SimulatedDriver:
        car = self.roads.place(self.rng)
        status, left = self.config.mix.initial(self.rng)
        if status != Status.OFFLINE:
            car.speed = min(car.cruise, self.config.style.max_speed)
        return SimulatedDriver(self.config.driver_id(index), car, status, left)

    def slot_time(self, slot: int) -> float:
        """When slot ``slot`` falls due, seconds after the start of the run."""
        return slot * self.config.interval_s / self.config.drivers

    def fix_for_slot(self, slot: int, timestamp: float) -> Fix | None:
        """The fix of the driver whose turn ``slot`` is, or None while that driver is offline."""
        driver = self.driver_for_slot(slot)
        return None if driver is None else driver.fix(timestamp)

    def driver_for_slot(self, slot: int) -> SimulatedDriver | None:
        """Move the driver whose turn ``slot`` is to where it reports, or None while it is offline.

        The caller sends that driver's fix next (:meth:`SimulatedDriver.fix`, or the producer's own
        encoding of the same fields) and counts it in the driver's ``seq``.
        """
        config = self.config
        driver = self.drivers[slot % config.drivers]
        now = slot * config.interval_s / config.drivers  # slot_time, inline: this runs for every fix
        if driver.status == Status.OFFLINE:
            if now < driver.status_until and driver.seq > 0:
                return None  # silent; its first fix announces it as offline so maps know it exists
            if now >= driver.status_until:
                self.set_status(driver, Status.AVAILABLE, now)
        else:
            if slot >= config.drivers:
                self.roads.advance(driver.car, config.interval_s, self.rng)
            if driver.ride is not None:
                self._follow_ride(driver, now)
            else:
                self._update_status(driver, now)
        return driver

    def assign_ride(self, match: RideMatch, pickup: tuple[float, float], now: float) -> Ride | None:
        """Send the matched driver to the rider at ``pickup``: ``on_trip`` from its next fix on.

        The match wins over whatever the random mix had planned (a trip of its own, pulling over,
        even a spell offline that began after the matcher last saw the driver free). None when
        the driver is not one of ours, or is already carrying out a ride.
        """
        driver = self.by_id.get(match.driver_id or "")
        if driver is None or driver.ride is not None:
            return None
        ride = new_ride(match, pickup, self.roads, self.config.timing, self.rng, now)
        car = driver.car
        car.pull_over = False
        car.stop_left = 0.0
        driver.status = Status.ON_TRIP
        driver.ride = ride
        self.roads.head_for(car, ride.goal, self.rng)
        self.rides_in_progress += 1
        return ride

    def _follow_ride(self, driver: SimulatedDriver, now: float) -> None:
        ride = driver.ride
        if ride is None or not ride.update(driver.car, now):
            return
        self.roads.head_for(driver.car, ride.goal, self.rng)
        if ride.phase == DONE:
            driver.ride = None
            self.rides_in_progress -= 1
            self.rides_completed += 1
            self.set_status(driver, Status.AVAILABLE, now)

    def rider_spot(self, rng: random.Random) -> tuple[float, float]:
        """Where a new rider stands: usually within walking-and-waiting reach of a free driver."""
        if rng.random() < NEAR_DRIVER_SHARE:
            for _ in range(20):
                driver = rng.choice(self.drivers)
                if driver.status == Status.AVAILABLE and driver.ride is None:
                    return place(self.roads, rng, near=(driver.car.lat, driver.car.lon), distance_m=NEAR_DRIVER_M)
        return anywhere(self.roads, rng)

    def _update_status(self, driver: SimulatedDriver, now: float) -> None:
        car = driver.car
        if car.pull_over:
            if car.stopped:
                car.pull_over = False
                self.set_status(driver, Status.OFFLINE, now)
            return
        if now < driver.status_until:
            return
        if driver.status == Status.ON_TRIP:
            car.stop_for(self.rng.uniform(*self.config.mix.dropoff_stop_s))
            self.set_status(driver, Status.AVAILABLE, now)
        elif self.config.mix.after_available(self.rng) == Status.ON_TRIP:
            self.start_trip(driver, now, self.config.mix.spell(Status.ON_TRIP, self.rng))
        else:
            car.pull_over = True  # offline once parked, not in the middle of the road

    def start_trip(self, driver: SimulatedDriver, now: float, duration_s: float) -> None:
        """Put ``driver`` on a random trip of ``duration_s`` seconds, starting with a pick-up stop.

        Rides of riders the matcher assigned go through :meth:`assign_ride` instead.
        """
        driver.car.stop_for(self.rng.uniform(*self.config.mix.pickup_stop_s))
        driver.status = Status.ON_TRIP
        driver.status_until = now + duration_s

    def set_status(self, driver: SimulatedDriver, status: str, now: float) -> None:
        driver.status = status
        driver.status_until = now + self.config.mix.spell(status, self.rng)

    def counts(self) -> dict[str, int]:
        """How many drivers are in each status right now."""
        counts: dict[str, int] = dict.fromkeys(Status, 0)
        for driver in self.drivers:
            counts[driver.status] += 1
        return counts
