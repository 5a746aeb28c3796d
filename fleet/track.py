"""A driver's track: the time window asked for, the fixes found in it, and what they say (speeds, stops).

Pure: no Kafka, no clock (``now`` is passed in). ``dashboard/tracks.py`` reads the fixes back from
Kafka and hands them to a :class:`TrackBuilder`; ``docs/api.md`` ("Driver tracks") is the contract.

A window is given as epoch seconds or ISO 8601 with a zone; a local time without a zone is refused
rather than guessed (the server's zone is not the reader's). Speeds are derived from the positions
and times of consecutive fixes, not taken from ``speed_kmh`` (optional, and a producer's own claim).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fleet.geo import haversine_m
from fleet.schema import Fix

# The default window: what a reader glancing at a driver wants ("where has it been lately").
DEFAULT_WINDOW_S = 15 * 60
# The longest window: a day of fixes every second is 86,400 points, already past MAX_POINTS.
MAX_WINDOW_S = 24 * 3600
# Points in one answer: 20,000 [lat, lon, t] triples are ~900 KB of JSON and draw at once on a phone.
MAX_POINTS = 20_000
# Longer than any epoch number or ISO 8601 time ("2026-12-01T18:30:00.123456+05:30" is 32): refused unparsed.
MAX_TIME_CHARS = 40
# A stop: the driver stayed within STOP_RADIUS_M of where it stopped for at least STOP_MIN_S. 20 m is
# GPS noise and a parking manoeuvre; 30 s is longer than most red lights, shorter than any pick-up.
STOP_RADIUS_M = 20.0
STOP_MIN_S = 30.0
# Epoch seconds: digits with an optional fraction, nothing else (no sign, exponent, inf or nan).
_EPOCH = re.compile(r"[0-9]{1,11}(\.[0-9]{1,9})?")

Point = tuple[float, float, float]  # latitude, longitude, epoch seconds


class WindowError(ValueError):
    """A window that cannot be read; the message says what to send instead."""


@dataclass(frozen=True)
class Window:
    """From ``start`` to ``end`` (epoch seconds, both included), ``start < end``."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def contains(self, timestamp: float) -> bool:
        return self.start <= timestamp <= self.end


def parse_time(text: str, name: str) -> float:
    """Epoch seconds (``1795645154.5``) or ISO 8601 with a zone (``2026-12-01T18:30:00Z``) as epoch seconds."""
    if len(text) > MAX_TIME_CHARS or not text.isascii():
        raise WindowError(f"{name} must be epoch seconds or an ISO 8601 time with a zone, like 2026-12-01T18:30:00Z")
    if _EPOCH.fullmatch(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise WindowError(
            f"{name} is neither epoch seconds nor an ISO 8601 time (like 2026-12-01T18:30:00Z or "
            "2026-12-01T19:30:00+01:00); check the zone: Z or +HH:MM, at most 23:59"
        ) from None
    if moment.tzinfo is None:
        raise WindowError(f"{name} has no zone: add Z (UTC) or an offset like +01:00 (the server does not guess)")
    seconds = moment.timestamp()  # an aware time: no overflow at year 1 or 9999, whatever its offset
    if seconds < 0:
        raise WindowError(f"{name} is before 1970")
    return seconds


def parse_window(start: str | None, end: str | None, now: float) -> Window:
    """The window of ``?from=&to=`` (absent or empty: ``to`` is now, ``from`` 15 minutes before ``to``)."""
    until = parse_time(end, "to") if end else now
    since = parse_time(start, "from") if start else until - DEFAULT_WINDOW_S
    if since >= until:
        raise WindowError("from must be before to")
    if until - since > MAX_WINDOW_S:
        hours = (until - since) / 3600
        raise WindowError(f"the window is {hours:.1f} h long; ask for at most {MAX_WINDOW_S // 3600} h at a time")
    return Window(since, until)


@dataclass(frozen=True)
class Stop:
    """The driver stayed within :data:`STOP_RADIUS_M` of (``latitude``, ``longitude``) from ``start`` to ``end``."""

    start: float
    end: float
    latitude: float
    longitude: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Track:
    """A driver's fixes in a window, in time order, with the speed of each segment and the stops."""

    driver_id: str
    window: Window
    points: list[Point]
    speeds_kmh: list[float | None]  # speeds_kmh[i]: from point i-1 to point i (None for the first)
    stops: list[Stop]
    truncated: bool  # MAX_POINTS were found before the end of the window


@dataclass
class TrackBuilder:
    """Collects one driver's fixes (in any order, repeats included) up to ``max_points`` inside ``window``."""

    driver_id: str
    window: Window
    max_points: int = MAX_POINTS
    points: list[Point] = field(default_factory=list)
    full: bool = False

    def add(self, fix: Fix) -> bool:
        """Keep ``fix`` if it is the driver's and inside the window; False once ``max_points`` are held."""
        if fix.driver_id == self.driver_id and self.window.contains(fix.timestamp):
            self.points.append((fix.latitude, fix.longitude, fix.timestamp))
            self.full = len(self.points) >= self.max_points
        return not self.full

    def build(self) -> Track:
        points = in_time_order(self.points)
        return Track(self.driver_id, self.window, points, segment_speeds(points), find_stops(points), self.full)


def in_time_order(points: Iterable[Point]) -> list[Point]:
    """Points sorted by time; of several with one timestamp (a producer's retry) the last one read is kept."""
    by_time: dict[float, Point] = {}
    for point in points:
        by_time[point[2]] = point
    return [by_time[t] for t in sorted(by_time)]


def segment_speeds(points: Sequence[Point]) -> list[float | None]:
    """km/h from each point to the next, rounded to 0.1, at the later point; None at the first point."""
    speeds: list[float | None] = [None] * min(1, len(points))
    for (lat1, lon1, t1), (lat2, lon2, t2) in zip(points, points[1:], strict=False):
        seconds = t2 - t1
        speeds.append(round(haversine_m(lat1, lon1, lat2, lon2) / seconds * 3.6, 1) if seconds > 0 else None)
    return speeds


def find_stops(points: Sequence[Point], radius_m: float = STOP_RADIUS_M, min_seconds: float = STOP_MIN_S) -> list[Stop]:
    """The stops of a track in time order: runs of points within ``radius_m`` of the run's first, ``min_seconds`` long.

    One pass: a run starts at a point and takes the following points while they stay within ``radius_m``
    of it; the next run starts at the first point that left. Linear whatever the points hold.
    """
    stops: list[Stop] = []
    start = 0
    while start < len(points):
        lat, lon, since = points[start]
        end = start + 1
        while end < len(points) and haversine_m(lat, lon, points[end][0], points[end][1]) <= radius_m:
            end += 1
        until = points[end - 1][2]
        if until - since >= min_seconds:
            stops.append(Stop(since, until, lat, lon))
        start = end
    return stops


def tick_times(start: float, end: float, step_s: float) -> list[float]:
    """Every whole multiple of ``step_s`` (epoch seconds) from ``start`` to ``end``: where time labels go."""
    if step_s <= 0 or not math.isfinite(start) or not math.isfinite(end) or end < start:
        return []
    first = math.ceil(start / step_s) * step_s
    return [first + i * step_s for i in range(int((end - first) // step_s) + 1)]


def track_json(track: Track) -> dict[str, object]:
    """The JSON body of ``GET /api/drivers/<id>/track`` without the read's own figures."""
    return {
        "driver_id": track.driver_id,
        "from": track.window.start,
        "to": track.window.end,
        "points": [list(point) for point in track.points],
        "speeds_kmh": track.speeds_kmh,
        "stops": [
            {
                "from": s.start,
                "to": s.end,
                "seconds": round(s.seconds, 3),
                "latitude": s.latitude,
                "longitude": s.longitude,
            }
            for s in track.stops
        ],
        "truncated": track.truncated,
    }


def safe_file_part(text: str, max_chars: int = 64) -> str:
    """``text`` as a piece of a file name: ASCII letters, digits, ``.``, ``_`` and ``-``; anything else ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:max_chars].strip(".")
    return cleaned or "driver"


def compact_utc(epoch_s: float) -> str:
    """``20261201T183000Z``: a moment for a file name."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
