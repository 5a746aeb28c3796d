"""The live fleet as the dashboard holds it: the newest fix per driver, a short trail, and what changed.

Pure and single-threaded: the caller feeds validated fixes in batches (:meth:`FleetState.apply_batch`),
sweeps out silent drivers now and then (:meth:`FleetState.sweep`) and takes what changed once per
frame (:meth:`FleetState.take_changes`). It must keep up with tens of thousands of fixes a second in
pure Python, so the hot path touches only attributes of slotted objects and one ordered dict.

A fix replaces the one held for its driver only when :func:`fleet.schema.supersedes` says so: never
an older one, and never a smaller ``seq`` unless its producer clearly restarted.

Two clocks, on purpose:
- *stale* uses the fix timestamp (``now - timestamp > stale_after_s``), the rule the browser applies
  to the records it gets, so the server's counts and the map agree;
- *silence* (drop after ``drop_after_s``, eviction past ``max_drivers``) uses the time a fix was last
  taken for that driver, so a producer whose clock is off still keeps its drivers on the map, and the
  longest-silent driver is always the first in the dict, which makes sweeping and evicting O(1) each.
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from fleet.schema import STATUSES, Fix, supersedes

STALE_AFTER_S = 30.0
DROP_AFTER_S = 600.0
MAX_DRIVERS = 100_000
TRAIL_LENGTH = 50
UNKNOWN_STATUS = "unknown"
_TRAIL_STRIDE = 3  # latitude, longitude, timestamp


class TrackedDriver:
    """One driver as held: its newest fix, where in Kafka it came from, and its trail."""

    __slots__ = (
        "idx",
        "driver_id",
        "latitude",
        "longitude",
        "timestamp",
        "heading",
        "speed_kmh",
        "status",
        "seq",
        "partition",
        "offset",
        "heard_at",
        "trail",
        "announced",
    )

    def __init__(self, idx: int, driver_id: str) -> None:
        self.idx = idx
        self.driver_id = driver_id
        self.latitude = 0.0
        self.longitude = 0.0
        self.timestamp = -math.inf
        self.heading: float | None = None
        self.speed_kmh: float | None = None
        self.status: str | None = None
        self.seq: int | None = None
        self.partition = -1
        self.offset = -1
        self.heard_at = 0.0
        # Flat (lat, lon, ts) triples in one array of doubles: 1.2 KB per driver at 50 points, where a
        # deque of tuples would take five times that (100,000 drivers must fit comfortably).
        self.trail = array("d")
        # Whether clients have been told this driver's id (in a frame or a snapshot), so that
        # removing it must be announced in ``gone``.
        self.announced = False

    def trail_points(self) -> list[list[float]]:
        """The trail as ``[[lat, lon, timestamp], ...]``, oldest first."""
        t = self.trail
        return [[t[i], t[i + 1], t[i + 2]] for i in range(0, len(t), _TRAIL_STRIDE)]

    def is_stale(self, now: float, stale_after_s: float) -> bool:
        return now - self.timestamp > stale_after_s


@dataclass
class Changes:
    """What clients must learn since the previous frame."""

    new: list[TrackedDriver] = field(default_factory=list)  # drivers whose id clients have not been told
    changed: list[TrackedDriver] = field(default_factory=list)  # drivers with a newer fix (new ones included)
    gone: list[int] = field(default_factory=list)  # idx of announced drivers dropped or evicted

    def __bool__(self) -> bool:
        return bool(self.changed or self.gone or self.new)


class FleetState:
    """The newest fix of every driver heard recently, bounded to ``max_drivers``."""

    def __init__(
        self,
        stale_after_s: float = STALE_AFTER_S,
        drop_after_s: float = DROP_AFTER_S,
        max_drivers: int = MAX_DRIVERS,
        trail_length: int = TRAIL_LENGTH,
    ) -> None:
        if max_drivers < 1 or trail_length < 1:
            raise ValueError("max_drivers and trail_length must be at least 1")
        self.stale_after_s = stale_after_s
        self.drop_after_s = drop_after_s
        self.max_drivers = max_drivers
        self._trail_values = trail_length * _TRAIL_STRIDE
        # Least recently heard first: move_to_end on every fix keeps sweeping and eviction O(1).
        self._drivers: OrderedDict[str, TrackedDriver] = OrderedDict()
        self._next_idx = 0
        self._new: dict[int, TrackedDriver] = {}
        self._changed: dict[int, TrackedDriver] = {}
        self._gone: list[int] = []
        self.applied = 0
        self.ignored_older = 0
        self.evicted = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._drivers)

    def __iter__(self) -> Iterator[TrackedDriver]:
        return iter(self._drivers.values())

    def get(self, driver_id: str) -> TrackedDriver | None:
        return self._drivers.get(driver_id)

    def trail_of(self, driver_id: str) -> list[list[float]]:
        """Where ``driver_id`` has been lately, ``[[lat, lon, timestamp], ...]`` oldest first; [] if unknown."""
        driver = self._drivers.get(driver_id)
        return driver.trail_points() if driver is not None else []

    def apply(self, fix: Fix, partition: int, offset: int, now: float) -> bool:
        """Take one fix heard at epoch ``now``; False when it is not newer than the one held."""
        return self.apply_batch(((fix, partition, offset),), now) == 1

    def apply_batch(self, records: Iterable[tuple[Fix, int, int]], now: float) -> int:
        """Take ``(fix, partition, offset)`` records heard at epoch ``now``; return how many were newer."""
        drivers = self._drivers
        changed = self._changed
        trail_values = self._trail_values
        taken = 0
        for fix, partition, offset in records:
            driver = drivers.get(fix.driver_id)
            if driver is None:
                driver = self._add(fix.driver_id)
            elif not supersedes(fix.timestamp, fix.seq, driver.timestamp, driver.seq) or (
                # the same record again (a consumer that reconnected and re-read it): no duplicate trail point
                fix.timestamp == driver.timestamp and partition == driver.partition and offset <= driver.offset
            ):
                self.ignored_older += 1
                continue
            else:
                drivers.move_to_end(fix.driver_id)
            driver.latitude = fix.latitude
            driver.longitude = fix.longitude
            driver.timestamp = fix.timestamp
            driver.heading = fix.heading
            driver.speed_kmh = fix.speed_kmh
            driver.status = fix.status
            driver.seq = fix.seq
            driver.partition = partition
            driver.offset = offset
            driver.heard_at = now
            trail = driver.trail
            trail.extend((fix.latitude, fix.longitude, fix.timestamp))
            if len(trail) > trail_values:
                del trail[:_TRAIL_STRIDE]
            changed[driver.idx] = driver
            taken += 1
        self.applied += taken
        return taken

    def sweep(self, now: float) -> int:
        """Drop drivers not heard for ``drop_after_s``; return how many."""
        cutoff = now - self.drop_after_s
        drivers = self._drivers
        count = 0
        while drivers:
            oldest = next(iter(drivers.values()))
            if oldest.heard_at >= cutoff:
                break
            drivers.popitem(last=False)
            self._forget(oldest)
            count += 1
        self.dropped += count
        return count

    def take_changes(self) -> Changes:
        """What changed since the previous call; the new drivers count as announced from now on."""
        changes = Changes(list(self._new.values()), list(self._changed.values()), self._gone)
        for driver in changes.new:
            driver.announced = True
        self._new = {}
        self._changed = {}
        self._gone = []
        return changes

    def snapshot(self) -> list[TrackedDriver]:
        """Every driver held; all count as announced (a client got their ids with the snapshot)."""
        drivers = list(self._drivers.values())
        for driver in drivers:
            driver.announced = True
        return drivers

    def counts(self, now: float) -> dict[str, int]:
        """Drivers by status (``unknown`` when none was sent), ``stale`` and ``total``."""
        counts = dict.fromkeys((*STATUSES, UNKNOWN_STATUS), 0)
        stale_before = now - self.stale_after_s
        stale = 0
        for driver in self._drivers.values():
            counts[driver.status or UNKNOWN_STATUS] += 1
            if driver.timestamp < stale_before:
                stale += 1
        return {"total": len(self._drivers), **counts, "stale": stale}

    def _add(self, driver_id: str) -> TrackedDriver:
        if len(self._drivers) >= self.max_drivers:
            _, evicted = self._drivers.popitem(last=False)
            self._forget(evicted)
            self.evicted += 1
        driver = TrackedDriver(self._next_idx, driver_id)
        self._next_idx += 1
        self._drivers[driver_id] = driver
        self._new[driver.idx] = driver
        return driver

    def _forget(self, driver: TrackedDriver) -> None:
        self._changed.pop(driver.idx, None)
        self._new.pop(driver.idx, None)
        if driver.announced:
            self._gone.append(driver.idx)
