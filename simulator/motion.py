"""How one simulated car moves: kinematics on open roads or on a street grid, no clock and no I/O.

A driver has a position, a heading and a speed. Each step of at most one second it speeds up or
brakes towards a target speed within bounded acceleration, turns no faster than its speed allows,
stops now and then, and never leaves the area: near an edge it turns back towards the middle.
Every random choice comes from the ``random.Random`` passed in, so a seed replays a run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from fleet.geo import EARTH_RADIUS_M, BBox, bearing_deg, destination, haversine_m

KMH_PER_MPS = 3.6
M_PER_DEG_LAT = EARTH_RADIUS_M * math.pi / 180.0
# The bearing of Manhattan's avenues, degrees from north: the street grid's default.
MANHATTAN_BEARING = 29.0
# Long intervals are integrated in steps of at most this, so a 5 s interval still curves smoothly.
MAX_STEP_S = 1.0
# A car this close to its goal has arrived: it stops rather than circle the exact point.
ARRIVED_M = 1.0
# A goal this close to a grid line is on it (coordinates travel with 6 decimals, ~0.1 m).
ON_LINE_M = 0.5


@dataclass(frozen=True)
class DrivingStyle:
    """How every driver of a fleet drives; the defaults are calm city driving."""

    max_speed_kmh: float = 60.0
    accel_mps2: float = 2.0
    brake_mps2: float = 3.0
    # Turn rate is limited by the sideways acceleration a passenger accepts, and by the wheel.
    lateral_mps2: float = 2.5
    max_turn_dps: float = 30.0
    turn_speed_kmh: float = 15.0
    mean_s_between_stops: float = 75.0
    stop_s: tuple[float, float] = (6.0, 35.0)
    mean_s_between_turns: float = 40.0
    mean_s_between_cruise_changes: float = 30.0
    # Heading noise while driving straight, degrees per sqrt(second): lanes are not laser lines.
    wander_deg: float = 1.5

    @property
    def max_speed(self) -> float:
        return self.max_speed_kmh / KMH_PER_MPS

    @property
    def turn_speed(self) -> float:
        return min(self.turn_speed_kmh / KMH_PER_MPS, self.max_speed)

    def cruise_speed(self, rng: random.Random) -> float:
        """A new speed to cruise at, between a third of the top speed and 92% of it."""
        return self.max_speed * rng.uniform(0.33, 0.92)

    def stop_duration(self, rng: random.Random) -> float:
        return rng.uniform(*self.stop_s)


@dataclass(slots=True)
class Car:
    """The motion state of one driver; positions in degrees, speeds in m/s, headings in degrees."""

    lat: float
    lon: float
    heading: float
    speed: float = 0.0
    cruise: float = 0.0
    turn_left: float = 0.0  # signed degrees still to turn (positive: clockwise)
    stop_left: float = 0.0  # seconds still to stand once stopped
    pull_over: bool = False  # brake to a stop and stay there (going offline)
    homing: bool = False  # turning back from the edge of the area
    # Street grid only: metres along the avenues (a) and streets (s), and direction 0..3
    # (0 along the avenues, 1 along the streets, 2 and 3 the opposite ways).
    a: float = 0.0
    s: float = 0.0
    direction: int = 0
    next_turn: int = 0  # at the next intersection: -1 left, 0 straight, +1 right, 2 back
    stop_next: bool = False  # a red light at the next intersection
    # Where the driver is heading (a rider, a destination), or None to roam; set with Roads.head_for.
    goal: tuple[float, float] | None = None

    @property
    def speed_kmh(self) -> float:
        return self.speed * KMH_PER_MPS

    def stop_for(self, seconds: float) -> None:
        """Brake to a stop, then stand for ``seconds`` (a light, a pick-up, a drop-off)."""
        self.stop_left = max(self.stop_left, seconds)

    @property
    def stopped(self) -> bool:
        return self.speed == 0.0


def approach(speed: float, target: float, accel: float, brake: float, dt: float) -> float:
    """The speed after ``dt`` seconds of accelerating or braking towards ``target``."""
    if target > speed:
        return min(target, speed + accel * dt)
    return max(target, speed - brake * dt)


def braking_speed(v0: float, end_speed: float, distance: float, brake: float, dt: float) -> float:
    """The highest speed at the end of a ``dt`` step from which braking still reaches ``end_speed`` in ``distance``.

    After the step the car is ``distance - (v0 + v1) * dt / 2`` further on, and must be able to
    brake from ``v1`` to ``end_speed`` over what is left: solve v1^2 <= ve^2 + 2*b*d_left.
    """
    c = end_speed**2 + 2.0 * brake * distance - brake * dt * v0
    if c <= 0.0:
        return 0.0
    return (-brake * dt + math.sqrt((brake * dt) ** 2 + 4.0 * c)) / 2.0


def angle_diff(from_deg: float, to_deg: float) -> float:
    """The signed turn in (-180, 180] that takes heading ``from_deg`` to ``to_deg``."""
    d = (to_deg - from_deg) % 360.0
    return d - 360.0 if d > 180.0 else d


def poisson_event(rng: random.Random, mean_interval_s: float, dt: float) -> bool:
    """Whether an event that happens every ``mean_interval_s`` on average happens within ``dt``."""
    return rng.random() < dt / mean_interval_s


class OpenRoads:
    """Drive anywhere inside the area, as if streets ran every way: smooth curves and turns."""

    def __init__(self, area: BBox, style: DrivingStyle) -> None:
        self.area = area
        self.style = style
        height_m = (area.max_lat - area.min_lat) * M_PER_DEG_LAT
        self._lat_margin = min(250.0, 0.2 * height_m) / M_PER_DEG_LAT
        mid_cos = math.cos(math.radians(area.center[0]))
        width_m = (area.max_lon - area.min_lon) * M_PER_DEG_LAT * mid_cos
        self._lon_margin = min(250.0, 0.2 * width_m) / (M_PER_DEG_LAT * mid_cos)

    def place(self, rng: random.Random) -> Car:
        area = self.area
        return Car(
            lat=rng.uniform(area.min_lat, area.max_lat),
            lon=rng.uniform(area.min_lon, area.max_lon),
            heading=rng.uniform(0.0, 360.0),
            cruise=self.style.cruise_speed(rng),
        )

    def roadside(self, lat: float, lon: float) -> tuple[float, float] | None:
        """Where a car can stop for someone standing at this point: the point itself, if inside the area."""
        return (lat, lon) if self.area.contains(lat, lon) else None

    def head_for(self, car: Car, goal: tuple[float, float] | None, rng: random.Random) -> None:
        """Drive towards ``goal`` (stopping there) from the next step on; None to roam again."""
        car.goal = goal
        car.homing = False

    def advance(self, car: Car, dt: float, rng: random.Random) -> None:
        while dt > 1e-9:
            step = min(dt, MAX_STEP_S)
            self._step(car, step, rng)
            dt -= step

    def _step(self, car: Car, dt: float, rng: random.Random) -> None:
        style = self.style
        self._plan(car, dt, rng)
        if car.goal is None:
            self._steer_home(car, rng)
        target = 0.0 if car.stop_left > 0.0 or car.pull_over else car.cruise
        if car.goal is not None:
            target = min(target, self._steer_to_goal(car, car.goal, dt))
        if car.homing or abs(car.turn_left) > 30.0:
            target = min(target, style.turn_speed)
        v0, v1 = car.speed, approach(car.speed, target, style.accel_mps2, style.brake_mps2, dt)
        v1 = min(v1, style.max_speed)
        turn = 0.0
        if v1 > 0.0:
            rate = min(style.max_turn_dps, math.degrees(style.lateral_mps2 / v1))
            turn = max(-rate * dt, min(rate * dt, car.turn_left))
            car.turn_left -= turn
            turn += rng.gauss(0.0, style.wander_deg) * math.sqrt(dt)
        distance = (v0 + v1) / 2.0 * dt
        if distance > 0.0:
            lat, lon = destination(car.lat, car.lon, car.heading + turn / 2.0, distance)
            if not self.area.contains(lat, lon):
                # Clamping towards the box never lengthens the step: the box is convex and the
                # car was inside it, so the speed limit between fixes still holds.
                lat, lon = self._clamp(lat, lon)
                self._turn_home(car, rng)
            car.lat, car.lon = lat, lon
        car.heading = (car.heading + turn) % 360.0
        car.speed = v1
        if v1 == 0.0 and car.stop_left > 0.0:
            car.stop_left = max(0.0, car.stop_left - dt)

    def _plan(self, car: Car, dt: float, rng: random.Random) -> None:
        style = self.style
        # A car on its way somewhere neither wanders off nor makes the random stops of roaming
        # traffic, so it arrives about when the matcher's ETA says.
        roaming = car.goal is None
        if roaming and car.stop_left == 0.0 and car.speed > 0.0 and poisson_event(rng, style.mean_s_between_stops, dt):
            car.stop_for(style.stop_duration(rng))
        if roaming and car.turn_left == 0.0 and not car.homing and poisson_event(rng, style.mean_s_between_turns, dt):
            car.turn_left = rng.choice((-90.0, 90.0, -90.0, 90.0, -45.0, 45.0))
        if poisson_event(rng, style.mean_s_between_cruise_changes, dt):
            car.cruise = style.cruise_speed(rng)

    def _steer_to_goal(self, car: Car, goal: tuple[float, float], dt: float) -> float:
        """Aim at the goal and return the speed from which the car can still stop on it."""
        lat, lon = goal
        distance = haversine_m(car.lat, car.lon, lat, lon)
        if distance < ARRIVED_M:
            car.turn_left = 0.0
            return 0.0
        car.turn_left = angle_diff(car.heading, bearing_deg(car.lat, car.lon, lat, lon))
        return braking_speed(car.speed, 0.0, distance, self.style.brake_mps2, dt)

    def _steer_home(self, car: Car, rng: random.Random) -> None:
        if self._heading_out(car):
            if not car.homing:
                self._turn_home(car, rng)
        else:
            car.homing = False

    def _heading_out(self, car: Car) -> bool:
        area, north, east = self.area, math.cos(math.radians(car.heading)), math.sin(math.radians(car.heading))
        return (
            (north > 0.0 and car.lat > area.max_lat - self._lat_margin)
            or (north < 0.0 and car.lat < area.min_lat + self._lat_margin)
            or (east > 0.0 and car.lon > area.max_lon - self._lon_margin)
            or (east < 0.0 and car.lon < area.min_lon + self._lon_margin)
        )

    def _turn_home(self, car: Car, rng: random.Random) -> None:
        """Aim at a random point of the middle of the area, so cars do not all converge on one spot."""
        area = self.area
        lat = rng.uniform((3 * area.min_lat + area.max_lat) / 4, (area.min_lat + 3 * area.max_lat) / 4)
        lon = rng.uniform((3 * area.min_lon + area.max_lon) / 4, (area.min_lon + 3 * area.max_lon) / 4)
        car.turn_left = angle_diff(car.heading, bearing_deg(car.lat, car.lon, lat, lon))
        car.homing = True

    def _clamp(self, lat: float, lon: float) -> tuple[float, float]:
        area = self.area
        return min(max(lat, area.min_lat), area.max_lat), min(max(lon, area.min_lon), area.max_lon)


class StreetGrid:
    """Drive along a regular grid of avenues and streets rotated by ``bearing`` degrees.

    Manhattan's avenues run about 29 degrees east of true north, about 270 m apart; its streets
    cross them every 80 m or so. Cars turn only at intersections, slow down before turning,
    stop at some lights, and turn back where the grid leaves the area.
    """

    STREET_SPACING_M = 80.0  # between two streets, along an avenue
    AVENUE_SPACING_M = 270.0  # between two avenues, along a street
    RED_LIGHT_CHANCE = 0.2
    CREEP_MPS = 1.0
    # Avenues are the arteries: cars follow one for a kilometre or so, and cross town in shorter runs.
    AVENUE_TURNS = ((0, 0.92), (-1, 0.04), (1, 0.04))
    STREET_TURNS = ((0, 0.6), (-1, 0.2), (1, 0.2))

    def __init__(self, area: BBox, style: DrivingStyle, bearing: float = MANHATTAN_BEARING) -> None:
        self.area = area
        self.bearing = bearing % 90.0
        self.lat0, self.lon0 = area.center
        cos0 = math.cos(math.radians(self.lat0))
        self._m_per_deg_lon = M_PER_DEG_LAT * cos0
        b = math.radians(self.bearing)
        self._avenue = (math.sin(b), math.cos(b))  # unit vector (east, north) along the avenues
        self._street = (math.cos(b), -math.sin(b))  # along the streets, 90 degrees clockwise
        # The grid is laid out with the middle latitude's scale; where the area reaches nearer the
        # equator a metre of grid is a little longer on the ground, so cap speeds to match.
        nearest_equator = 0.0 if area.min_lat <= 0.0 <= area.max_lat else min(abs(area.min_lat), abs(area.max_lat))
        stretch = math.cos(math.radians(nearest_equator)) / cos0
        self.style = style
        self.max_speed = style.max_speed / stretch

    def place(self, rng: random.Random) -> Car:
        """A car at a random intersection inside the area, facing a way it can drive."""
        for _ in range(1000):
            a, s = self._to_grid(
                rng.uniform(self.area.min_lat, self.area.max_lat), rng.uniform(self.area.min_lon, self.area.max_lon)
            )
            a = round(a / self.STREET_SPACING_M) * self.STREET_SPACING_M
            s = round(s / self.AVENUE_SPACING_M) * self.AVENUE_SPACING_M
            if not self._inside(a, s):
                continue
            ways = [d for d in range(4) if self._inside(*self._next_corner(a, s, d))]
            if ways:
                car = Car(lat=0.0, lon=0.0, heading=0.0, cruise=self.style.cruise_speed(rng), a=a, s=s)
                car.direction = rng.choice(ways)
                self._plan_corner(car, rng)
                self._sync(car)
                return car
        raise ValueError(
            f"the area is too small for the street grid: it needs two crossings "
            f"{self.STREET_SPACING_M:.0f} m x {self.AVENUE_SPACING_M:.0f} m apart"
        )

    def advance(self, car: Car, dt: float, rng: random.Random) -> None:
        while dt > 1e-9:
            step = min(dt, MAX_STEP_S)
            self._step(car, step, rng)
            dt -= step
        self._sync(car)

    def roadside(self, lat: float, lon: float) -> tuple[float, float] | None:
        """The nearest point of a block (both its corners inside the area) to this point, or None."""
        point = self._kerb(*self._to_grid(lat, lon))
        return None if point is None else self._to_latlon(*point)

    def head_for(self, car: Car, goal: tuple[float, float] | None, rng: random.Random) -> None:
        """Route towards ``goal`` (stopping there) from the next corner on; None to roam again."""
        car.goal = goal
        self._plan_corner(car, rng)

    def _kerb(self, a: float, s: float) -> tuple[float, float] | None:
        """The nearest point on a block of the grid whose two corners are inside the area."""
        street_a = round(a / self.STREET_SPACING_M) * self.STREET_SPACING_M
        avenue_s = round(s / self.AVENUE_SPACING_M) * self.AVENUE_SPACING_M
        below_s = math.floor(s / self.AVENUE_SPACING_M) * self.AVENUE_SPACING_M
        below_a = math.floor(a / self.STREET_SPACING_M) * self.STREET_SPACING_M
        on_street = (abs(a - street_a), (street_a, s), (street_a, below_s), (street_a, below_s + self.AVENUE_SPACING_M))
        on_avenue = (abs(s - avenue_s), (a, avenue_s), (below_a, avenue_s), (below_a + self.STREET_SPACING_M, avenue_s))
        for _, point, corner1, corner2 in sorted((on_street, on_avenue)):
            if self._inside(*corner1) and self._inside(*corner2):
                return point
        return None

    def _goal_on_grid(self, goal: tuple[float, float]) -> tuple[float, float]:
        a, s = self._to_grid(*goal)
        return self._kerb(a, s) or (a, s)

    def _on_block(
        self, start: tuple[float, float], direction: int, goal: tuple[float, float], length: float | None = None
    ) -> float | None:
        """How far the goal lies ahead of ``start`` in ``direction`` within ``length`` (a block), or None."""
        sign = 1.0 if direction < 2 else -1.0
        if direction % 2 == 0:
            along, across, spacing = (goal[0] - start[0]) * sign, goal[1] - start[1], self.STREET_SPACING_M
        else:
            along, across, spacing = (goal[1] - start[1]) * sign, goal[0] - start[0], self.AVENUE_SPACING_M
        if abs(across) < ON_LINE_M and -ON_LINE_M < along <= (spacing if length is None else length) + ON_LINE_M:
            return max(along, 0.0)
        return None

    def _step(self, car: Car, dt: float, rng: random.Random) -> None:
        style = self.style
        roaming = car.goal is None
        if (
            roaming
            and car.stop_left == 0.0
            and car.speed > 0.0
            and poisson_event(rng, style.mean_s_between_stops * 3, dt)
        ):
            car.stop_for(style.stop_duration(rng))  # double-parked van, pedestrian: not only lights
        if poisson_event(rng, style.mean_s_between_cruise_changes, dt):
            car.cruise = style.cruise_speed(rng)
        v0 = car.speed
        v1 = min(approach(v0, self._target_speed(car, dt), style.accel_mps2, style.brake_mps2, dt), self.max_speed)
        distance = (v0 + v1) / 2.0 * dt
        while distance > 0.0:
            to_corner = self._to_corner(car)
            if distance < to_corner:
                self._move(car, distance)
                break
            self._move(car, to_corner)
            distance -= to_corner
            red_light = car.stop_next
            self._turn_at_corner(car)
            self._plan_corner(car, rng)
            if red_light:
                car.stop_for(style.stop_duration(rng))
                v1 = 0.0
                break
        car.speed = v1
        if v1 == 0.0 and car.stop_left > 0.0:
            car.stop_left = max(0.0, car.stop_left - dt)

    def _target_speed(self, car: Car, dt: float) -> float:
        if car.stop_left > 0.0 or car.pull_over:
            return 0.0
        # Creep up to a red light rather than brake to 0 short of it and never arrive.
        corner_speed = self.CREEP_MPS if car.stop_next else (self.style.turn_speed if car.next_turn else car.cruise)
        brake = self.style.brake_mps2
        target = min(car.cruise, braking_speed(car.speed, corner_speed, self._to_corner(car), brake, dt))
        if car.goal is not None:
            # The goal on this block (or straight on past the corner): stop on it.
            goal = self._goal_on_grid(car.goal)
            ahead = self._on_block((car.a, car.s), car.direction, goal, self._to_corner(car))
            if ahead is None and car.next_turn == 0:
                corner = self._next_corner_ahead(car)
                beyond = self._on_block(corner, car.direction, goal)
                ahead = None if beyond is None else beyond + self._to_corner(car)
            if ahead is not None:
                target = 0.0 if ahead < ARRIVED_M else min(target, braking_speed(car.speed, 0.0, ahead, brake, dt))
        return target

    def _next_corner_ahead(self, car: Car) -> tuple[float, float]:
        distance = self._to_corner(car)
        sign = 1.0 if car.direction < 2 else -1.0
        if car.direction % 2 == 0:
            return car.a + sign * distance, car.s
        return car.a, car.s + sign * distance

    def _to_corner(self, car: Car) -> float:
        spacing = self.STREET_SPACING_M if car.direction % 2 == 0 else self.AVENUE_SPACING_M
        along = car.a if car.direction % 2 == 0 else car.s
        if car.direction >= 2:
            along = -along
        # Corners are exact multiples of the spacing (see _turn_at_corner): on one, the next is a block away.
        return spacing - along % spacing

    def _move(self, car: Car, distance: float) -> None:
        sign = 1.0 if car.direction < 2 else -1.0
        if car.direction % 2 == 0:
            car.a += sign * distance
        else:
            car.s += sign * distance

    def _turn_at_corner(self, car: Car) -> None:
        car.a = round(car.a / self.STREET_SPACING_M) * self.STREET_SPACING_M
        car.s = round(car.s / self.AVENUE_SPACING_M) * self.AVENUE_SPACING_M
        car.direction = (car.direction + car.next_turn) % 4

    def _plan_corner(self, car: Car, rng: random.Random) -> None:
        """Choose what to do at the next corner: a way that stays inside the area, else turn back.

        A car with a goal takes the way that gets it nearest (blocks counted, as a taxi drives).
        """
        if car.goal is not None:
            car.next_turn = self._turn_towards(car, self._goal_on_grid(car.goal))
            car.stop_next = rng.random() < self.RED_LIGHT_CHANCE
            return
        ahead = self._next_corner_ahead(car)
        options = [
            (turn, weight)
            for turn, weight in (self.AVENUE_TURNS if car.direction % 2 == 0 else self.STREET_TURNS)
            if self._inside(*self._next_corner(*ahead, (car.direction + turn) % 4))
        ]
        if options:
            car.next_turn = rng.choices([t for t, _ in options], [w for _, w in options])[0]
        else:
            car.next_turn = 2
        car.stop_next = rng.random() < self.RED_LIGHT_CHANCE

    def _turn_towards(self, car: Car, goal: tuple[float, float]) -> int:
        corner = self._next_corner_ahead(car)
        best_turn, best_left = 2, math.inf
        for turn in (0, -1, 1, 2):
            direction = (car.direction + turn) % 4
            if self._on_block(corner, direction, goal) is not None:
                return turn
            after = self._next_corner(*corner, direction)
            left = abs(goal[0] - after[0]) + abs(goal[1] - after[1])
            if self._inside(*after) and left < best_left:
                best_turn, best_left = turn, left
        return best_turn

    def _next_corner(self, a: float, s: float, direction: int) -> tuple[float, float]:
        sign = 1.0 if direction < 2 else -1.0
        if direction % 2 == 0:
            return a + sign * self.STREET_SPACING_M, s
        return a, s + sign * self.AVENUE_SPACING_M

    def _inside(self, a: float, s: float) -> bool:
        return self.area.contains(*self._to_latlon(a, s))

    def _sync(self, car: Car) -> None:
        car.lat, car.lon = self._to_latlon(car.a, car.s)
        car.heading = (self.bearing + 90.0 * car.direction) % 360.0

    def _to_latlon(self, a: float, s: float) -> tuple[float, float]:
        east = a * self._avenue[0] + s * self._street[0]
        north = a * self._avenue[1] + s * self._street[1]
        return self.lat0 + north / M_PER_DEG_LAT, self.lon0 + east / self._m_per_deg_lon

    def _to_grid(self, lat: float, lon: float) -> tuple[float, float]:
        east = (lon - self.lon0) * self._m_per_deg_lon
        north = (lat - self.lat0) * M_PER_DEG_LAT
        return east * self._avenue[0] + north * self._avenue[1], east * self._street[0] + north * self._street[1]


Roads = OpenRoads | StreetGrid
