"""Which zones each driver is in, and the enter / exit / dwell events its fixes cause. Pure, single-threaded.

The zone processor keeps one :class:`ZoneTracker` per partition of ``driver-location`` it holds, and
feeds it that partition's fixes in order with the zones that contain each one
(:meth:`fleet.zones.ZoneTable.containing_many`). For a fix of a driver:

- **enter** when the fix is inside a zone the driver was not in;
- **exit** only when the fix is farther than the zone's ``hysteresis_m`` outside it: a fix just
  outside (GPS jitter at the edge) changes nothing, so a driver crossing an edge with a few metres of
  noise enters once and leaves once;
- **dwell** once, the first fix ``dwell_s`` or more after the enter, if the zone had ``dwell_s`` when the
  driver entered (a zone changed later keeps the drivers inside on the dwell they entered with);
- a fix whose timestamp is not after the driver's last one (out of order, stale, a repeat) is
  ignored: it produces no event and changes nothing.

A zone deleted (a tombstone in ``zones``) while drivers are in it gives each of them an **exit**,
with its last fix's position, timestamp and source (:meth:`ZoneTracker.zone_deleted`); so does a
zone that is no longer in the table when a restored state names it (:meth:`ZoneTracker.reconcile`).

The inside-set of a driver is the state that events depend on: it is written to the compacted
changelog ``zones-state`` (:meth:`ZoneTracker.take_changes`, key = driver id, a tombstone once the
driver is in no zone) in the same transaction as the events, and read back with
:meth:`ZoneTracker.restore`. The last fix of a driver in no zone is held only in memory (at most
``max_outside`` of them, least recently heard forgotten first): after a restart the log is replayed
from the committed offsets in order, so only a fix that was already out of order in the log could be
judged differently.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from fleet.zones import DWELL, ENTER, EXIT, Zone, ZoneEvent, ZoneTable

MAX_OUTSIDE = 200_000


@dataclass(slots=True)
class Inside:
    entered_at: float
    dwell_s: float | None  # the zone's dwell_s when the driver entered
    dwelt: bool = False
    due: float = math.inf  # when the dwell event is due (inf: never, or emitted)

    def __post_init__(self) -> None:
        if self.dwell_s is not None and not self.dwelt:
            self.due = self.entered_at + self.dwell_s


@dataclass(slots=True)
class DriverZones:
    """A driver inside at least one zone: its last fix and the zones it is in."""

    timestamp: float
    latitude: float
    longitude: float
    partition: int
    offset: int
    zones: dict[str, Inside] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # zone id -> name when entered (for exits of deleted zones)

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "source": {"partition": self.partition, "offset": self.offset},
            "zones": {
                zone_id: {
                    "entered_at": inside.entered_at,
                    "dwell_s": inside.dwell_s,
                    "dwelt": inside.dwelt,
                    "name": self.names.get(zone_id, ""),
                }
                for zone_id, inside in self.zones.items()
            },
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DriverZones:
        """Raises KeyError/TypeError/ValueError on a value this module did not write."""
        source = value["source"]
        driver = cls(
            timestamp=_finite(value["timestamp"]),
            latitude=_finite(value["latitude"]),
            longitude=_finite(value["longitude"]),
            partition=int(source["partition"]),
            offset=int(source["offset"]),
        )
        for zone_id, inside in value["zones"].items():
            if not isinstance(zone_id, str):
                raise TypeError("zone id")
            dwell_s = inside.get("dwell_s")
            driver.zones[zone_id] = Inside(
                _finite(inside["entered_at"]), None if dwell_s is None else _finite(dwell_s), bool(inside["dwelt"])
            )
            driver.names[zone_id] = str(inside.get("name", ""))
        return driver


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


class ZoneTracker:
    """The drivers of one partition and the zones they are in."""

    def __init__(self, max_outside: int = MAX_OUTSIDE) -> None:
        self.drivers: dict[str, DriverZones] = {}  # drivers inside at least one zone
        self._outside: OrderedDict[str, float] = OrderedDict()  # driver id -> last fix timestamp
        self._by_zone: dict[str, set[str]] = {}
        self._changed: set[str] = set()
        self.max_outside = max_outside
        self.ignored = 0  # out-of-order and stale fixes

    def observe(
        self,
        driver_id: str,
        latitude: float,
        longitude: float,
        timestamp: float,
        partition: int,
        offset: int,
        containing: list[Zone],
        table: ZoneTable,
    ) -> list[ZoneEvent]:
        """The events of one fix; ``containing`` are the zones of ``table`` that hold it."""
        driver = self.drivers.get(driver_id)
        last = driver.timestamp if driver is not None else self._outside.get(driver_id, -math.inf)
        if timestamp <= last:
            self.ignored += 1
            return []
        if driver is None:
            if not containing:
                self._outside[driver_id] = timestamp
                self._outside.move_to_end(driver_id)
                if len(self._outside) > self.max_outside:
                    self._outside.popitem(last=False)
                return []
            self._outside.pop(driver_id, None)
            driver = self.drivers[driver_id] = DriverZones(timestamp, latitude, longitude, partition, offset)
        else:
            driver.timestamp, driver.latitude, driver.longitude = timestamp, latitude, longitude
            driver.partition, driver.offset = partition, offset
        # (zone id, name, event) first, the events built at the end: most fixes have none
        found: list[tuple[str, str, str]] = []
        zones = driver.zones
        for zone in containing:
            if zone.zone_id not in zones:
                zones[zone.zone_id] = Inside(timestamp, zone.dwell_s)
                driver.names[zone.zone_id] = zone.name
                self._by_zone.setdefault(zone.zone_id, set()).add(driver_id)
                found.append((zone.zone_id, zone.name, ENTER))
        if len(zones) > len(containing):  # in a zone that does not hold this fix: left it, or in the band?
            inside_now = {zone.zone_id for zone in containing}
            for zone_id in [z for z in zones if z not in inside_now]:
                held = table.get(zone_id)
                if held is None or held.distance_m(latitude, longitude) > held.hysteresis_m:
                    found.append((zone_id, held.name if held is not None else driver.names.get(zone_id, ""), EXIT))
                    self._leave(driver, driver_id, zone_id)
        for zone_id, inside in zones.items():
            if timestamp >= inside.due:  # dwell_s as when the driver entered
                inside.dwelt, inside.due = True, math.inf
                held = table.get(zone_id)
                found.append((zone_id, held.name if held is not None else driver.names.get(zone_id, ""), DWELL))
        if not found:
            return []
        self._changed.add(driver_id)
        if not zones:
            self._forget(driver_id)
        return [
            ZoneEvent(driver_id, zone_id, name, kind, latitude, longitude, timestamp, partition, offset)
            for zone_id, name, kind in found
        ]

    def zone_deleted(self, zone_id: str) -> list[ZoneEvent]:
        """An exit for each driver in ``zone_id``, which is no longer in the table."""
        events = []
        for driver_id in sorted(self._by_zone.get(zone_id, ())):
            driver = self.drivers[driver_id]
            events.append(
                ZoneEvent(
                    driver_id,
                    zone_id,
                    driver.names.get(zone_id, ""),
                    EXIT,
                    driver.latitude,
                    driver.longitude,
                    driver.timestamp,
                    driver.partition,
                    driver.offset,
                )
            )
            self._leave(driver, driver_id, zone_id)
            if not driver.zones:
                self._forget(driver_id)
        return events

    def reconcile(self, table: ZoneTable) -> list[ZoneEvent]:
        """Exits for every zone a driver is in that ``table`` does not hold (deleted while nobody looked)."""
        events = []
        for zone_id in [z for z in self._by_zone if z not in table]:
            events.extend(self.zone_deleted(zone_id))
        return events

    def restore(self, driver_id: str, value: bytes | None) -> bool:
        """Take one record of the changelog (the newest per driver wins; None deletes); False if unreadable."""
        old = self.drivers.pop(driver_id, None)
        if old is not None:
            for zone_id in old.zones:
                self._unindex(driver_id, zone_id)
        if value is None:
            return True
        try:
            driver = DriverZones.from_json(json.loads(value))
        except (ValueError, KeyError, TypeError, AttributeError):
            return False
        if driver.zones:
            self.drivers[driver_id] = driver
            for zone_id in driver.zones:
                self._by_zone.setdefault(zone_id, set()).add(driver_id)
        return True

    def take_changes(self) -> dict[str, bytes | None]:
        """The changelog records of the drivers whose inside-set changed since the last call."""
        changes: dict[str, bytes | None] = {}
        for driver_id in self._changed:
            driver = self.drivers.get(driver_id)
            changes[driver_id] = (
                None if driver is None else json.dumps(driver.to_json(), separators=(",", ":")).encode("utf-8")
            )
        self._changed.clear()
        return changes

    def inside(self, zone_id: str) -> set[str]:
        return set(self._by_zone.get(zone_id, ()))

    def zones_of(self, driver_id: str) -> set[str]:
        driver = self.drivers.get(driver_id)
        return set(driver.zones) if driver is not None else set()

    def __len__(self) -> int:
        return len(self.drivers)

    def _leave(self, driver: DriverZones, driver_id: str, zone_id: str) -> None:
        del driver.zones[zone_id]
        driver.names.pop(zone_id, None)
        self._unindex(driver_id, zone_id)
        self._changed.add(driver_id)

    def _unindex(self, driver_id: str, zone_id: str) -> None:
        members = self._by_zone.get(zone_id)
        if members is not None:
            members.discard(driver_id)
            if not members:
                del self._by_zone[zone_id]

    def _forget(self, driver_id: str) -> None:
        """A driver in no zone: its last timestamp moves to the bounded outside list."""
        driver = self.drivers.pop(driver_id)
        self._outside[driver_id] = driver.timestamp
        self._outside.move_to_end(driver_id)
        if len(self._outside) > self.max_outside:
            self._outside.popitem(last=False)
