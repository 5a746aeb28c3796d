"""Matching riders with drivers, without I/O: who is free, who is nearest, who waits.

:class:`MatchPool` holds every driver's latest fix and which drivers are reserved; only drivers
free to take a rider are in its spatial index. :class:`Matcher` takes requests, answers each
one exactly once (a driver, or ``no_driver`` once the rider's wait runs out), remembers
which requests are answered so a request read twice is not answered twice, and can take
back everything it decided since the last checkpoint when a Kafka transaction fails.

Both are bounded whatever arrives: at most ``max_drivers`` drivers and ``max_waiting``
waiting riders are held (see each class), and a nearest-driver search costs a bounded number
of cells anywhere on Earth (:mod:`matcher.index`).

Every method takes ``now`` (epoch seconds) instead of reading a clock, so tests can play
out minutes of traffic in microseconds.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from fleet.rides import MATCHED, MAX_ETA_S, NO_DRIVER, RideMatch, RideRequest, area_of
from fleet.schema import Fix, Status, supersedes
from matcher.index import GridIndex

AVAILABLE_STATUSES = (None, Status.AVAILABLE)  # the guide's producer sends no status: such a driver is free
# A driver that moves from an area another matcher owns into ours waits this much longer than
# the oldest fix a matcher may act on, so a reservation made over there has reached us (see
# "Several matchers" in docs/api.md).
HANDOVER_SLACK_S = 2.0
# How often waiting riders are offered drivers again, since drivers move into reach.
RETRY_INTERVAL_S = 0.5
# A burst of freed drivers is offered to the waiting riders at most this often.
FREED_RETRY_INTERVAL_S = 0.1
# At most this many waiting riders (the oldest) are offered drivers per round: a crowd waiting
# where no driver is in reach costs a full-radius search each (~70 µs), so this bounds the
# cost of a round to a few tens of milliseconds.
RETRY_BUDGET = 500
SWEEP_INTERVAL_S = 1.0
# Drivers silent this many times the freshness limit are forgotten.
FORGET_AFTER_AGES = 10
# Memory bounds: a driver is a few hundred bytes, a waiting rider about a kilobyte. A city of
# 10,000 drivers is well under both; a flood of new driver ids or of riders no driver can
# reach (a producer gone wrong) is what they are for.
MAX_DRIVERS = 100_000
MAX_WAITING = 10_000


@dataclass(frozen=True)
class MatchConfig:
    max_radius_m: float = 5000.0
    city_speed_kmh: float = 25.0
    max_wait_s: float = 30.0
    reservation_timeout_s: float = 30.0
    driver_max_age_s: float = 15.0
    max_drivers: int = MAX_DRIVERS
    max_waiting: int = MAX_WAITING

    def __post_init__(self) -> None:
        for name in ("max_radius_m", "city_speed_kmh", "max_wait_s", "reservation_timeout_s", "driver_max_age_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("max_drivers", "max_waiting"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def handover_s(self) -> float:
        return self.driver_max_age_s + HANDOVER_SLACK_S


def eta_s(distance_m: float, speed_kmh: float) -> int:
    """Whole seconds to drive ``distance_m`` at ``speed_kmh``, rounded up, at most a day (the contract's bound)."""
    return min(MAX_ETA_S, math.ceil(distance_m / (speed_kmh / 3.6)))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a request was read: partition, offset, and the record's timestamp in ms."""

    partition: int
    offset: int
    timestamp_ms: int


@dataclass(slots=True)
class Candidate:
    driver_id: str
    latitude: float
    longitude: float
    fix_ts: float
    status: str | None
    owned: bool = True
    eligible_from: float = 0.0
    seq: int | None = None


def replaces(fix: Fix, driver: Candidate) -> bool:
    """Whether ``fix`` replaces the driver's latest one (:func:`fleet.schema.supersedes`). At the
    same timestamp only a larger seq does: without one, it is the same record read again (the
    matcher re-reads driver-location after every resync)."""
    if fix.timestamp == driver.fix_ts:
        return fix.seq is not None and driver.seq is not None and fix.seq > driver.seq
    return supersedes(fix.timestamp, fix.seq, driver.fix_ts, driver.seq)


@dataclass(frozen=True, slots=True)
class Reservation:
    request_id: str
    since: float  # when the match was decided (epoch seconds)


class MatchPool:
    """Drivers' latest fixes, their reservations, and an index of the drivers free to match.

    A driver is free when its latest fix says ``available`` (or no status), is at most
    ``driver_max_age_s`` old, lies in an area this matcher owns (past the hand-over wait), and
    no rider holds it. A reservation ends when the driver reports ``on_trip`` with a fix taken
    after the match, or ``reservation_timeout_s`` after the match if the trip never starts.

    A fix replaces the one held for its driver when it is newer (:func:`fleet.schema.supersedes`:
    an older ``seq`` never replaces a newer one, unless its producer restarted); the same fix
    read again changes nothing (:func:`replaces`). At most ``max_drivers`` drivers are held: a
    new one past that evicts the longest-silent driver (whose latest fix arrived longest ago)
    that no rider holds, counted in :attr:`evicted`. If every driver held is reserved, the new
    one is not held (counted too).
    """

    def __init__(self, config: MatchConfig, index: GridIndex | None = None) -> None:
        self.config = config
        self.index = index if index is not None else GridIndex()
        # Longest silent first: move_to_end on every fix taken keeps eviction O(1) (as fleet.state does).
        self.drivers: OrderedDict[str, Candidate] = OrderedDict()
        self.evicted = 0  # drivers forgotten (or not taken) because max_drivers were held
        self.reservations: dict[str, Reservation] = {}
        self._expiries: list[tuple[float, str, str]] = []  # (when, driver, request), a heap
        self.freed = 0  # counts drivers entering the index, so waiting riders get another try
        self._owns: Callable[[str], bool] | None = None
        self._next_sweep = 0.0

    def owns(self, latitude: float, longitude: float) -> bool:
        return self._owns is None or self._owns(area_of(latitude, longitude))

    def set_ownership(self, owns: Callable[[str], bool] | None, now: float) -> None:
        """Which areas this matcher may assign drivers in (None: all of them)."""
        self._owns = owns
        for driver in self.drivers.values():
            driver.owned = self.owns(driver.latitude, driver.longitude)
            self._refresh(driver, now)

    def on_fix(self, fix: Fix, now: float) -> None:
        driver = self.drivers.get(fix.driver_id)
        if driver is not None and not replaces(fix, driver):
            return  # an older fix never moves a driver back
        owned = self.owns(fix.latitude, fix.longitude)
        if driver is None:
            if not self._make_room():
                return
            driver = self.drivers[fix.driver_id] = Candidate(
                fix.driver_id, fix.latitude, fix.longitude, fix.timestamp, fix.status, owned, seq=fix.seq
            )
        else:
            self.drivers.move_to_end(fix.driver_id)
            if owned and not driver.owned:
                driver.eligible_from = now + self.config.handover_s
            driver.latitude, driver.longitude = fix.latitude, fix.longitude
            driver.fix_ts, driver.status, driver.owned, driver.seq = fix.timestamp, fix.status, owned, fix.seq
        reservation = self.reservations.get(fix.driver_id)
        if reservation is not None and fix.status == Status.ON_TRIP and fix.timestamp >= reservation.since:
            del self.reservations[fix.driver_id]  # the trip started: on_trip keeps the driver busy now
        self._refresh(driver, now)

    def _make_room(self) -> bool:
        """Whether a new driver may be held: below ``max_drivers``, or once the longest-silent
        driver that is not reserved is evicted. False when every driver held is reserved."""
        drivers = self.drivers
        if len(drivers) < self.config.max_drivers:
            return True
        for _ in range(len(drivers)):
            driver_id = next(iter(drivers))
            if driver_id in self.reservations:
                # Held for a rider: it goes round once more, behind every driver heard since.
                drivers.move_to_end(driver_id)
                continue
            del drivers[driver_id]
            self.index.remove(driver_id)
            self.evicted += 1
            return True
        self.evicted += 1
        return False

    def reserve(self, driver_id: str, request_id: str, since: float, now: float) -> None:
        """Hold a driver for a rider, unless the trip already started or the hold ran out."""
        current = self.reservations.get(driver_id)
        if current is not None and current.since >= since:
            return
        driver = self.drivers.get(driver_id)
        started = driver is not None and driver.status == Status.ON_TRIP and driver.fix_ts >= since
        if started or since + self.config.reservation_timeout_s <= now:
            return
        self.reservations[driver_id] = Reservation(request_id, since)
        heapq.heappush(self._expiries, (since + self.config.reservation_timeout_s, driver_id, request_id))
        if driver is not None:
            self._refresh(driver, now)

    def release(self, driver_id: str, request_id: str, now: float) -> None:
        """End the driver's reservation if it is held for ``request_id`` (ran out, or never committed)."""
        reservation = self.reservations.get(driver_id)
        if reservation is not None and reservation.request_id == request_id:
            del self.reservations[driver_id]
            driver = self.drivers.get(driver_id)
            if driver is not None:
                self._refresh(driver, now)

    def nearest(self, latitude: float, longitude: float, now: float) -> tuple[Candidate, float] | None:
        """The nearest free driver within the radius, and its great-circle distance in metres."""
        while True:
            found = self.index.nearest(latitude, longitude, self.config.max_radius_m)
            if found is None:
                return None
            driver = self.drivers[found[0]]
            if now - driver.fix_ts <= self.config.driver_max_age_s:
                return driver, found[1]
            self.index.remove(driver.driver_id)  # went silent since the last sweep

    def expire_reservations(self, now: float) -> None:
        """End the reservations whose trip did not start in time; their drivers are free again."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, driver_id, request_id = heapq.heappop(expiries)
            self.release(driver_id, request_id, now)

    def sweep(self, now: float) -> None:
        """Once a second: drop drivers long silent, take stale ones out, admit handed-over ones."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        forget_before = now - FORGET_AFTER_AGES * self.config.driver_max_age_s
        for driver in list(self.drivers.values()):
            if driver.fix_ts < forget_before and driver.driver_id not in self.reservations:
                del self.drivers[driver.driver_id]
                self.index.remove(driver.driver_id)
            else:
                self._refresh(driver, now)

    def is_free(self, driver: Candidate, now: float) -> bool:
        return (
            driver.status in AVAILABLE_STATUSES
            and driver.owned
            and now - driver.fix_ts <= self.config.driver_max_age_s
            and now >= driver.eligible_from
            and driver.driver_id not in self.reservations
        )

    def _refresh(self, driver: Candidate, now: float) -> None:
        if self.is_free(driver, now):
            if driver.driver_id not in self.index:
                self.freed += 1
            self.index.put(driver.driver_id, driver.latitude, driver.longitude)
        else:
            self.index.remove(driver.driver_id)


@dataclass(slots=True)
class Waiting:
    request: RideRequest
    source: Source
    deadline: float


class Matcher:
    """Answers each ride request once: the nearest free driver, or no_driver after the wait.

    Requests come with their :class:`Source`; :meth:`commit_positions` says, per partition,
    the offset to commit so that a restarted matcher reads again every request not yet
    answered (the oldest waiting one, else the next one). Answers of requests read again are
    known from :meth:`on_committed` (the ``ride-matches`` topic) and not given twice.

    At most ``max_waiting`` riders wait. One more pushes the oldest out: it is answered
    no_driver by the next :meth:`tick`, like a wait that ran out (exactly once, in the
    caller's transaction, its offset held until then), and counted in :attr:`evicted_waiting`.
    """

    def __init__(self, config: MatchConfig, pool: MatchPool | None = None) -> None:
        self.config = config
        self.pool = pool if pool is not None else MatchPool(config)
        self.waiting: dict[str, Waiting] = {}  # in arrival order
        self.evicted_waiting = 0  # riders answered no_driver early because max_waiting were waiting
        self._pushed_out: dict[str, Waiting] = {}  # past max_waiting; the next tick answers them
        self._deadlines: list[tuple[float, str]] = []  # (deadline, request id), a heap
        self._waiting_in: dict[int, dict[str, Waiting]] = {}
        self._answered: dict[str, float] = {}  # request id -> when it was answered
        self._undo: list[tuple[str, str | None]] = []  # decisions since the last checkpoint
        self._next: dict[int, tuple[int, int]] = {}  # partition -> (next offset, last record ts ms)
        self._last_retry = -math.inf
        self._freed_seen = 0

    def submit(self, request: RideRequest, source: Source, now: float) -> RideMatch | None:
        """Answer a request at once, or keep it waiting (None). A repeated request id is ignored."""
        self.advance(source)
        request_id = request.request_id
        if request_id in self._answered or request_id in self.waiting or request_id in self._pushed_out:
            return None
        deadline = request.timestamp + self.config.max_wait_s
        if now >= deadline:
            return self._answer(request, None, now)
        found = self.pool.nearest(request.latitude, request.longitude, now)
        if found is not None:
            return self._answer(request, found, now)
        waiting = Waiting(request, source, deadline)
        self.waiting[request_id] = waiting
        heapq.heappush(self._deadlines, (deadline, request_id))
        self._waiting_in.setdefault(source.partition, {})[request_id] = waiting
        if len(self.waiting) > self.config.max_waiting:
            self._push_out_oldest()
        return None

    def _push_out_oldest(self) -> None:
        """The oldest rider stops waiting; it stays in ``_waiting_in`` (its offset is not committed)
        until :meth:`tick` answers it."""
        request_id = next(iter(self.waiting))
        self._pushed_out[request_id] = self.waiting.pop(request_id)
        if len(self._deadlines) > 2 * self.config.max_waiting:
            # Deadlines of riders no longer waiting stay in the heap until they pass: drop them.
            self._deadlines = [(waiting.deadline, rid) for rid, waiting in self.waiting.items()]
            heapq.heapify(self._deadlines)

    def advance(self, source: Source) -> None:
        """Note that a record was read (a request, or one refused), so its offset can be committed."""
        self._next[source.partition] = (source.offset + 1, source.timestamp_ms)

    def read_to(self, partition: int) -> int:
        """The offset after the last record read from ``partition`` (0 before any)."""
        return self._next.get(partition, (0, 0))[0]

    @property
    def answered(self) -> int:
        """How many request ids are known to be answered (kept to refuse answering them again)."""
        return len(self._answered)

    def is_answered(self, request_id: str) -> bool:
        return request_id in self._answered

    def tick(self, now: float) -> list[RideMatch]:
        """Answer no_driver to the riders pushed out past ``max_waiting`` and to those whose wait
        ran out, then offer freed and moving drivers to the waiting riders, oldest first."""
        self.pool.expire_reservations(now)
        self.pool.sweep(now)
        answers = self._answer_pushed_out(now)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, request_id = heapq.heappop(self._deadlines)
            waiting = self.waiting.get(request_id)
            if waiting is not None:  # else answered or forgotten since
                self._stop_waiting(request_id, waiting.source.partition)
                answers.append(self._answer(waiting.request, None, now))
        since_retry = now - self._last_retry
        freed = self.pool.freed != self._freed_seen
        if not self.waiting or not (
            since_retry >= RETRY_INTERVAL_S or (freed and since_retry >= FREED_RETRY_INTERVAL_S)
        ):
            return answers
        self._last_retry = now
        self._freed_seen = self.pool.freed
        for request_id, waiting in list(islice(self.waiting.items(), RETRY_BUDGET)):
            if len(self.pool.index) == 0:
                break
            found = self.pool.nearest(waiting.request.latitude, waiting.request.longitude, now)
            if found is not None:
                self._stop_waiting(request_id, waiting.source.partition)
                answers.append(self._answer(waiting.request, found, now))
        return answers

    def _answer_pushed_out(self, now: float) -> list[RideMatch]:
        answers = []
        for request_id, waiting in self._pushed_out.items():
            del self._waiting_in[waiting.source.partition][request_id]
            answers.append(self._answer(waiting.request, None, now))
        self.evicted_waiting += len(answers)
        self._pushed_out.clear()
        return answers

    def on_committed(self, match: RideMatch, now: float) -> None:
        """A committed answer read from ride-matches, by this matcher or another one."""
        self._answered.setdefault(match.request_id, match.timestamp)
        waiting = self.waiting.get(match.request_id) or self._pushed_out.get(match.request_id)
        if waiting is not None:
            self._stop_waiting(match.request_id, waiting.source.partition)
        if match.outcome == MATCHED and match.driver_id is not None:
            self.pool.reserve(match.driver_id, match.request_id, match.timestamp, now)

    def commit_positions(self) -> dict[int, tuple[int, int]]:
        """Per partition read: (offset to commit, timestamp in ms of the record at that offset or before)."""
        positions = {}
        for partition, (offset, timestamp_ms) in self._next.items():
            waiting = self._waiting_in.get(partition)
            if waiting:
                oldest = next(iter(waiting.values())).source
                offset, timestamp_ms = oldest.offset, oldest.timestamp_ms
            positions[partition] = (offset, timestamp_ms)
        return positions

    def checkpoint(self) -> None:
        """Everything decided so far is committed."""
        self._undo.clear()

    def rollback(self, now: float) -> None:
        """Forget every answer since the checkpoint and every waiting request: they will be read again."""
        for request_id, driver_id in reversed(self._undo):
            self._answered.pop(request_id, None)
            if driver_id is not None:
                self.pool.release(driver_id, request_id, now)
        self._undo.clear()
        self.forget_partitions(list(self._next))

    def forget_partitions(self, partitions: list[int]) -> None:
        """Another matcher (or this one, after a rewind) reads these partitions from their committed offsets."""
        for partition in partitions:
            for request_id in self._waiting_in.pop(partition, {}):
                self.waiting.pop(request_id, None)
                self._pushed_out.pop(request_id, None)
            self._next.pop(partition, None)
        if not self.waiting:
            self._deadlines.clear()

    def forget_answers_before(self, timestamp: float) -> None:
        """Drop answers older than any request that could still be read again."""
        self._answered = {rid: ts for rid, ts in self._answered.items() if ts >= timestamp}

    def _stop_waiting(self, request_id: str, partition: int) -> None:
        if self.waiting.pop(request_id, None) is None:
            del self._pushed_out[request_id]
        del self._waiting_in[partition][request_id]

    def _answer(self, request: RideRequest, found: tuple[Candidate, float] | None, now: float) -> RideMatch:
        decided = round(now, 3)
        match = RideMatch(
            request_id=request.request_id,
            rider_id=request.rider_id,
            outcome=NO_DRIVER,
            timestamp=decided,
            requested_at=request.timestamp,
            latitude=request.latitude,
            longitude=request.longitude,
        )
        driver_id = None
        if found is not None:
            driver, distance = found
            driver_id = driver.driver_id
            match.outcome = MATCHED
            match.driver_id = driver_id
            match.distance_m = distance
            match.eta_s = eta_s(distance, self.config.city_speed_kmh)
            match.driver_latitude, match.driver_longitude = driver.latitude, driver.longitude
            self.pool.reserve(driver_id, request.request_id, decided, now)
        self._answered[request.request_id] = decided
        self._undo.append((request.request_id, driver_id))
        return match
