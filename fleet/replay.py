"""Replay, the pure part: what a replaying browser is asked for, where to seek, what it sees first and when.

:mod:`dashboard.replay` is the I/O shell (a consumer of its own per replaying browser, Socket.IO writes);
everything it decides is here, without I/O and with the clock passed in:

- :func:`parse_seek`, :func:`parse_control`: the payloads of the client's ``replay`` and ``replay_control``
  events, validated (a hostile client sends anything; anything else than the documented shape is refused);
- :func:`seek_offsets`: where each partition starts from ``offsets_for_times``' answers, which are ``None``
  past a partition's last record (start at the live end) and the first retained record before its start;
- :class:`Lookback`: the fleet as it was at the sought time T, each driver's last record at or before T
  within the stale window (Foxglove's "lookback" on seek), and which records are left for playing on;
- :class:`Playback`: the records still to play, per partition in offset order, handed out as the replay
  clock reaches their timestamps; records whose timestamps run backwards past the sought time are dropped;
- :class:`ReplayClock`: replayed time at a speed, paused or playing, never past the present;
- :class:`RidePlayback`: the ride requests and answers of a replay, applied to its own
  :class:`fleet.riders.Riders` in timestamp order as the replay clock reaches them;
- :func:`histogram`: fixes per time bucket from offsets at the bucket edges, summed over partitions.

Replay time is the **Kafka record timestamp** (CreateTime, milliseconds): the only time Kafka indexes
(``offsets_for_times``). The fix's own ``timestamp`` still travels in the frames, as live.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fleet.riders import WAITING_MAX_S, Riders
from fleet.rides import RideMatch, RideRequest

SPEEDS = (1, 2, 4, 16, 60)
# A replay id is the client's counter (it ignores frames of an older seek); bounded so it fits a JS number exactly.
MAX_REPLAY_ID = 2**31 - 1
# Seeking before 2000 or into the future is a broken or hostile client, not a reader of the time bar.
EARLIEST_SEEK_S = 946_684_800.0
FUTURE_SLACK_S = 5.0
# Rides are read back from this long before the sought time: a request still unanswered after it is not shown
# live either (fleet.riders), so the riders at T are those a dashboard started this long before T would show.
RIDES_LOOKBACK_S = WAITING_MAX_S

K = TypeVar("K")


class KafkaRecord(Protocol):
    """The parts of kafka-python's ``ConsumerRecord`` a replay reads."""

    partition: int
    offset: int
    timestamp: int  # milliseconds
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Seek:
    """``replay``: show the fleet as at epoch ``t``, then play on at ``speed`` (or stay paused)."""

    id: int
    t: float
    speed: int
    playing: bool


@dataclass(frozen=True)
class Control:
    """``replay_control``: play or pause, at a speed, from where the replay stands (no seek)."""

    id: int
    speed: int
    playing: bool


def _fields(args: Sequence[Any], names: set[str]) -> dict[str, Any] | None:
    """The one payload of an event as a dict with exactly ``names`` as keys, or None."""
    if len(args) != 1 or type(args[0]) is not dict or set(args[0]) != names:
        return None
    return args[0]


def _replay_id(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_REPLAY_ID else None


def _speed(value: Any) -> int | None:
    # 4.0 from a JavaScript client is 4 (JSON has one number type); True is not 1.
    if type(value) in (int, float) and value in SPEEDS:
        return int(value)
    return None


def parse_seek(args: Sequence[Any], now: float) -> Seek | None:
    """``[{"id": int, "t": epoch seconds, "speed": one of SPEEDS, "playing": bool}]`` at epoch ``now``, else None."""
    fields = _fields(args, {"id", "t", "speed", "playing"})
    if fields is None:
        return None
    replay_id, speed, t, playing = _replay_id(fields["id"]), _speed(fields["speed"]), fields["t"], fields["playing"]
    if replay_id is None or speed is None or type(playing) is not bool or type(t) not in (int, float):
        return None
    if not (math.isfinite(t) and EARLIEST_SEEK_S <= t <= now + FUTURE_SLACK_S):
        return None
    return Seek(replay_id, float(min(t, now)), speed, playing)


def parse_control(args: Sequence[Any]) -> Control | None:
    """``[{"id": int, "speed": one of SPEEDS, "playing": bool}]``, else None."""
    fields = _fields(args, {"id", "speed", "playing"})
    if fields is None:
        return None
    replay_id, speed, playing = _replay_id(fields["id"]), _speed(fields["speed"]), fields["playing"]
    if replay_id is None or speed is None or type(playing) is not bool:
        return None
    return Control(replay_id, speed, playing)


def seek_offsets(found: Mapping[K, int | None], beginnings: Mapping[K, int], ends: Mapping[K, int]) -> dict[K, int]:
    """Per partition, where to start: ``offsets_for_times``' offset, the live end where it found none (the time
    is past the partition's last record), and never outside what the partition holds now (retention may have
    deleted the start meanwhile)."""
    offsets = {}
    for partition, end in ends.items():
        offset = found.get(partition)
        start = beginnings.get(partition, 0)
        offsets[partition] = end if offset is None else max(start, min(offset, end))
    return offsets


class Lookback:
    """The fleet as it was at ``t``: for each key, its last record with a timestamp in ``[t - window_s, t]``.

    Fed every record from the window's start offsets up to ``split`` (the first offset timestamped after
    ``t``, per partition). Records of that range timestamped after ``t`` (a producer's clock behind the
    others') are handed back for playing on. Keeping only the newest raw record per key means only those
    are decoded: a 30 s window of 1,000 drivers at 1 Hz is 30,000 records and 1,000 decodes. Records without
    a key (the guide's producer) are kept in arrival order and decoded all.
    """

    def __init__(self, t: float, window_s: float, split: Mapping[int, int]) -> None:
        self.t_ms = t * 1000.0
        self.since_ms = (t - window_s) * 1000.0
        self.split = dict(split)
        self.latest: dict[bytes, KafkaRecord] = {}
        self.keyless: list[KafkaRecord] = []
        self.too_old = 0

    def take(self, record: KafkaRecord) -> bool:
        """Take a record of the look-back range; False when it is timestamped after ``t``: play it later."""
        if record.timestamp > self.t_ms:
            return False
        if record.timestamp < self.since_ms:
            self.too_old += 1  # before the window: a driver silent that long is not on the map at t
        elif record.key is None:
            self.keyless.append(record)
        else:
            held = self.latest.get(record.key)
            if held is None or record.timestamp >= held.timestamp:
                self.latest[record.key] = record
        return True

    def covers(self, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` is in the look-back range (else it is played)."""
        return offset < self.split.get(partition, 0)

    def done(self, positions: Mapping[int, int]) -> bool:
        """Whether every partition has been read up to its split offset."""
        return all(positions.get(p, 0) >= split for p, split in self.split.items())

    def records(self) -> list[KafkaRecord]:
        """The fleet at ``t``, oldest first (so applying them in order leaves each driver's newest)."""
        return sorted([*self.latest.values(), *self.keyless], key=lambda r: r.timestamp)


class Playback:
    """Records still to play, per partition in offset order; bounded by the caller (:attr:`buffered`).

    A partition's timestamps rise but for a producer whose clock runs behind (or a second producer):
    a record timestamped before the sought time ``t`` once the seek has passed it is dropped (counted in
    :attr:`backwards`), one timestamped a little before the one in front of it is played with it.
    """

    def __init__(self, t: float) -> None:
        self.t_ms = t * 1000.0
        self.queues: dict[int, deque[KafkaRecord]] = {}
        self.buffered = 0
        self.backwards = 0

    def add(self, record: KafkaRecord) -> None:
        if record.timestamp < self.t_ms:
            self.backwards += 1
            return
        self.queues.setdefault(record.partition, deque()).append(record)
        self.buffered += 1

    def due(self, until: float) -> list[KafkaRecord]:
        """Records whose timestamps the replay clock at ``until`` has reached, taken out of the buffer."""
        until_ms = until * 1000.0
        out: list[KafkaRecord] = []
        for queue in self.queues.values():
            while queue and queue[0].timestamp <= until_ms:
                out.append(queue.popleft())
        self.buffered -= len(out)
        return out

    def horizon(self, partition: int) -> float | None:
        """Epoch seconds of the newest record buffered for ``partition``, None when none is."""
        queue = self.queues.get(partition)
        return queue[-1].timestamp / 1000.0 if queue else None


class RidePlayback:
    """The ride requests and answers of one replay, in record-timestamp order across both topics and every
    partition, applied to ``riders`` as the replay clock reaches them.

    Fed from :data:`RIDES_LOOKBACK_S` before the sought time; once everything up to that time is in,
    ``apply_due(t)`` leaves ``riders`` as they stood at ``t``, and each later call plays on. Whether a ride was
    picked up is the replay's own finding, from the replayed fixes (:meth:`fleet.riders.Riders.check_pickups`),
    as live: a ride picked up before the look-back window of the fixes shows en route, as it would on a
    dashboard started at the sought time. Nothing read is ever dropped (a lost answer would show its rider
    waiting for good): the reader stops reading ahead while :attr:`full`, so the bound is ``max_buffered`` plus
    one poll; the look-back before the sought time is held whole, however busy those 300 s were.
    """

    def __init__(self, max_buffered: int) -> None:
        self.riders = Riders()
        self.max_buffered = max_buffered
        self._heap: list[tuple[int, int, RideRequest | RideMatch]] = []
        self._arrived = 0  # ties in timestamp keep the order read

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def full(self) -> bool:
        """Whether to stop reading ahead: ``max_buffered`` messages wait."""
        return len(self._heap) >= self.max_buffered

    def add(self, timestamp_ms: int, message: RideRequest | RideMatch) -> None:
        self._arrived += 1
        heapq.heappush(self._heap, (timestamp_ms, self._arrived, message))

    def apply_due(self, t: float) -> int:
        """Apply every message timestamped at or before ``t`` (epoch seconds); how many were."""
        until_ms = t * 1000.0
        applied = 0
        while self._heap and self._heap[0][0] <= until_ms:
            _, _, message = heapq.heappop(self._heap)
            if isinstance(message, RideRequest):
                self.riders.add_request(message, t)
            else:
                self.riders.add_match(message)
            applied += 1
        return applied


def newest_per_key(records: Iterable[KafkaRecord]) -> list[KafkaRecord]:
    """Of records due at one tick, each key's newest (by timestamp; keyless records all), in their order.

    A frame carries one record per driver, its newest: at 60x a tick holds six fixes of each driver, and
    decoding only the one shown cuts the replay's JSON work sixfold (a replay has no trail to fill).
    """
    newest: dict[bytes, KafkaRecord] = {}
    keyless: list[KafkaRecord] = []
    for record in records:
        if record.key is None:
            keyless.append(record)
            continue
        held = newest.get(record.key)
        if held is None or record.timestamp >= held.timestamp:
            newest[record.key] = record
    return [*newest.values(), *keyless]


class ReplayClock:
    """Replayed epoch seconds as a function of the monotonic clock: ``t`` at ``at_mono``, then ``speed`` replayed
    seconds per real second while playing; never past ``ceiling`` (the present: a replay cannot run ahead)."""

    def __init__(self, t: float, at_mono: float, speed: int = 1, playing: bool = True) -> None:
        self.t = t
        self.anchor = at_mono
        self.speed = speed
        self.playing = playing

    def now(self, mono: float, ceiling: float = math.inf) -> float:
        t = self.t + (mono - self.anchor) * self.speed if self.playing else self.t
        return min(t, ceiling)

    def set(self, mono: float, speed: int, playing: bool, ceiling: float = math.inf) -> None:
        """Change speed or play/pause from where the clock stands at ``mono``."""
        self.t = self.now(mono, ceiling)
        self.anchor = mono
        self.speed = speed
        self.playing = playing


def bucket_edges(start: float, end: float, buckets: int) -> list[float]:
    """``buckets + 1`` evenly spaced epoch seconds from ``start`` to ``end``."""
    width = (end - start) / buckets
    return [start + k * width for k in range(buckets)] + [end]


def histogram(offsets_at_edges: Sequence[Mapping[int, int | None]], ends: Mapping[int, int]) -> list[int]:
    """Records per bucket: for each edge, ``offsets_for_times``' answer per partition (None: past its end), so a
    bucket holds, summed over partitions, the offsets between its two edges. The time index is monotonic only
    per segment, so an edge's offset is never taken below the previous edge's: no bucket is negative."""
    counts = [0] * max(0, len(offsets_at_edges) - 1)
    for partition, end in ends.items():
        previous: int | None = None
        for k, found in enumerate(offsets_at_edges):
            offset = found.get(partition)
            offset = end if offset is None else min(offset, end)
            if previous is not None:
                offset = max(offset, previous)
                counts[k - 1] += offset - previous
            previous = offset
    return counts


def first_timestamp(found: Iterable[tuple[int, int] | None]) -> float | None:
    """Epoch seconds of the earliest retained record: the smallest timestamp (ms) among ``offsets_for_times(0)``'s
    (offset, timestamp) answers, None for topics without records."""
    stamps = [ts for item in found if item is not None for ts in (item[1],) if ts >= 0]
    return min(stamps) / 1000.0 if stamps else None
