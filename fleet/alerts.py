"""Zone alerts as the dashboard holds them: the newest events, and per zone the enters and exits of the last hour.

Pure and single-threaded, like :mod:`fleet.riders`. The dashboard feeds it the events of
``zone-events`` (committed ones only: the feed reads with read_committed) and, once per tick, takes
the events added since the previous take (:meth:`AlertStore.take_new`) for the ``zone_alerts``
Socket.IO event; a page that connects gets :meth:`AlertStore.newest` instead.

Bounded whatever the event rate: at most ``max_events`` events are kept (the latest received),
and the hour's counts are kept per zone in one-minute buckets (so "the last hour" is exact to the
minute), for at most ``max_zones`` zones (the ones heard from longest ago are forgotten first).
Counts go by the event's own timestamp, so a dashboard that starts and reads back the last hour
of ``zone-events`` counts the same as one that was running all along.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.zones import ZoneEvent

MAX_EVENTS = 500
WINDOW_S = 3600.0
BUCKET_S = 60.0
MAX_ZONES = 20_000
SNAPSHOT_EVENTS = 50  # events a page gets when it connects
COUNTED = ("enter", "exit")


class _Counts:
    """One zone's enters and exits in buckets of ``BUCKET_S``: ``[bucket, enters, exits]``, oldest first."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()

    def add(self, bucket: int, kind: int) -> None:
        buckets = self.buckets
        if not buckets or buckets[-1][0] < bucket:
            buckets.append([bucket, 0, 0])
            buckets[-1][kind] += 1
            return
        for entry in reversed(buckets):  # late events (another partition) land a bucket or two back
            if entry[0] == bucket:
                entry[kind] += 1
                return
            if entry[0] < bucket:
                break
        buckets.append([bucket, 0, 0])
        buckets[-1][kind] += 1
        self.buckets = deque(sorted(buckets))

    def prune(self, oldest: int) -> None:
        while self.buckets and self.buckets[0][0] < oldest:
            self.buckets.popleft()

    def totals(self, oldest: int) -> tuple[int, int]:
        enters = exits = 0
        for bucket, e, x in self.buckets:
            if bucket >= oldest:
                enters += e
                exits += x
        return enters, exits


class AlertStore:
    """The latest zone events and the last hour's counts per zone."""

    def __init__(
        self,
        max_events: int = MAX_EVENTS,
        window_s: float = WINDOW_S,
        bucket_s: float = BUCKET_S,
        max_zones: int = MAX_ZONES,
    ) -> None:
        if max_events < 1 or max_zones < 1 or window_s <= 0 or bucket_s <= 0:
            raise ValueError("max_events and max_zones must be at least 1, window_s and bucket_s positive")
        self.max_events = max_events
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.max_zones = max_zones
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max_events)  # (seq, json), received order
        self._counts: OrderedDict[str, _Counts] = OrderedDict()  # least recently counted first
        self.seq = 0  # events received so far; +1 for each
        self._taken = 0
        self.too_old = 0  # events older than the window: listed, not counted

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.newest(self.max_events))

    def add(self, event: ZoneEvent, now: float) -> None:
        """Keep one event (the zone-events JSON of docs/api.md) and count it if it is an enter or exit of the hour."""
        self.seq += 1
        self._events.append((self.seq, event.to_json()))
        if event.event not in COUNTED:
            return
        if event.timestamp < now - self.window_s:
            self.too_old += 1
            return
        counts = self._counts.get(event.zone_id)
        if counts is None:
            counts = self._counts[event.zone_id] = _Counts()
            if len(self._counts) > self.max_zones:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(event.zone_id)
        counts.add(self._bucket(event.timestamp), 1 + COUNTED.index(event.event))

    def newest(self, limit: int = SNAPSHOT_EVENTS) -> list[dict[str, Any]]:
        """The ``limit`` newest events by their timestamp, newest first."""
        return _newest_first(self._events, limit)

    def take_new(self) -> list[dict[str, Any]]:
        """The events received since the previous call (those still held), newest first."""
        new = [item for item in self._events if item[0] > self._taken]
        self._taken = self.seq
        return _newest_first(new, len(new))

    def counters(self, now: float) -> dict[str, dict[str, int]]:
        """Per zone with any: ``{"enter_1h", "exit_1h"}`` over the last hour (to the minute)."""
        oldest = self._bucket(now - self.window_s)
        result: dict[str, dict[str, int]] = {}
        for zone_id in list(self._counts):
            counts = self._counts[zone_id]
            counts.prune(oldest)
            if not counts.buckets:
                del self._counts[zone_id]
                continue
            enters, exits = counts.totals(oldest)
            result[zone_id] = {"enter_1h": enters, "exit_1h": exits}
        return result

    def _bucket(self, timestamp: float) -> int:
        return math.floor(timestamp / self.bucket_s)


def _newest_first(items: Any, limit: int) -> list[dict[str, Any]]:
    ordered = sorted(items, key=lambda item: (item[1]["timestamp"], item[0]), reverse=True)
    return [body for _, body in ordered[:limit]]
