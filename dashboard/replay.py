"""Replay, per browser: a consumer of its own seeks the driver topic to a past time and plays it to that browser.

The I/O shell of :mod:`fleet.replay`. A browser that sends ``replay`` gets a :class:`ReplaySession`: a green
thread with its own ``KafkaConsumer`` (every partition by manual assignment, no group, nothing committed, so
no other consumer notices it). A seek to T asks ``offsets_for_times`` where T minus the stale window and T
itself fall in each partition, reads that range into a :class:`fleet.replay.Lookback`, sends the fleet as it
was at T as a ``snapshot``, then plays on: every tick it hands the records the :class:`fleet.replay.ReplayClock`
has reached to a :class:`fleet.state.FleetState` of its own and sends what changed as a ``positions`` frame,
the same binary frames as live (:mod:`fleet.frames`) with a ``replay`` field added. Riders replay too
(:class:`RideReplay`): a second consumer reads ``ride-requests`` and ``ride-matches`` read_committed from
:data:`fleet.replay.RIDES_LOOKBACK_S` before T, and a ``riders`` event with the ``replay`` field follows every
snapshot and every change. The browser leaves the live audience meanwhile
(:meth:`dashboard.audience.Audience.hold`): other browsers stay live.

Bounded: at most ``DASHBOARD_MAX_REPLAYS`` sessions, each buffering at most :data:`MAX_BUFFERED` records (it
stops polling while every partition is far enough ahead of the replay clock), each skipping frames its browser
cannot take yet and sending a snapshot once it can, like live. Never blocking eventlet's hub: kafka-python's sockets are
green under monkey patching, polls are small and short, and the loop sleeps with ``socketio.sleep``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS
from bus.lean_fetch import lean_consumer
from dashboard.push import EVENT_RIDES
from dashboard.settings import DashboardSettings
from fleet import decode, frames
from fleet.decode import Decoder, Refusal
from fleet.replay import (
    RIDES_LOOKBACK_S,
    Control,
    KafkaRecord,
    Lookback,
    Playback,
    ReplayClock,
    RidePlayback,
    Seek,
    bucket_edges,
    first_timestamp,
    histogram,
    newest_per_key,
    seek_offsets,
)
from fleet.riders import riders_json
from fleet.rides import RideMatch, RideRequest
from fleet.state import FleetState

log = logging.getLogger(__name__)

# Records buffered ahead of the replay clock, at most: 60x of 1,000 drivers is 60,000 fixes a second.
MAX_BUFFERED = 50_000
# Ride requests and answers buffered ahead, at most (a busy city asks a few a second).
MAX_RIDES_BUFFERED = 20_000
# The riders' counts age with the replayed time: the page hears them at least this often (real seconds).
RIDERS_EVERY_S = 1.0
# A partition is read ahead of the replay clock by this many real seconds at the replay's speed, no further.
LEAD_S = 1.5
POLL_RECORDS = 2000
POLL_TIMEOUT_MS = 50
# Polls a tick may take at most this long in all (each followed by a yield): 60x of 1,000 drivers is 6,000
# records a tick, three polls.
READ_BUDGET_S = 0.06
KAFKA_TIMEOUT_MS = 5000
SWEEP_EVERY_S = 1.0
# A lookback is 30 s of records (0.5 s for 1,000 drivers); one still reading after this is stuck, not slow: the
# browser is told and goes live rather than waiting forever.
LOOKBACK_TIMEOUT_S = 30.0
# The time bar's histogram: this many buckets, asked again at most this often whoever asks.
TIMELINE_BUCKETS = 60
TIMELINE_CACHE_S = 10.0

Send = Callable[[str, dict[str, Any], list[str]], None]


class Replays:
    """Every replay of one dashboard process, at most ``settings.max_replays`` at once, one per browser."""

    def __init__(
        self,
        settings: DashboardSettings,
        start_task: Callable[[Callable[[], None]], Any],
        sleep: Callable[[float], None],
        send: Send,
        ready: Callable[[str], bool],
        leave_live: Callable[[str], None],
        back_live: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self._start_task = start_task
        self._sleep = sleep
        self._send = send
        self._ready = ready
        self._leave_live = leave_live
        self._back_live = back_live
        self.sessions: dict[str, ReplaySession] = {}
        self.refused = 0
        self._timeline = Timeline(settings.bootstrap_servers, settings.topic)

    def __len__(self) -> int:
        return len(self.sessions)

    def seek(self, sid: str, seek: Seek) -> bool:
        """Start replaying for ``sid`` at ``seek.t`` (or move its replay there); False when the cap refuses it."""
        session = self.sessions.get(sid)
        if session is None:
            if len(self.sessions) >= self.settings.max_replays:
                self.refused += 1
                reason = (
                    f"This dashboard already runs {self.settings.max_replays} replays, its most "
                    "(DASHBOARD_MAX_REPLAYS); the map stays live. Try again when another viewer goes back to live."
                )
                self._send("replay_refused", {"v": frames.VERSION, "id": seek.id, "reason": reason}, [sid])
                return False
            session = ReplaySession(sid, self.settings, self._send, self._ready, self._sleep, self._ended)
            self.sessions[sid] = session
            self._leave_live(sid)
            self._start_task(session.run)
            log.info("replay started for a browser (%d of at most %d)", len(self.sessions), self.settings.max_replays)
        session.request(seek)
        return True

    def control(self, sid: str, control: Control) -> None:
        session = self.sessions.get(sid)
        if session is not None:
            session.control(control)

    def stop(self, sid: str, live: bool = True) -> None:
        """The browser went live (``live``) or left: its slot is free at once, its consumer closes right after."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        session.stop()
        if live:
            self._back_live(sid)

    def _ended(self, session: ReplaySession) -> None:
        """A session whose replay failed (Kafka away): its slot is freed and its browser is live again."""
        if self.sessions.get(session.sid) is session:
            self.stop(session.sid)

    def stop_all(self) -> None:
        for sid in list(self.sessions):
            self.stop(sid, live=False)
        self._timeline.close()

    def timeline(self) -> dict[str, Any]:
        return self._timeline.get()


class ReplaySession:
    """One browser's replay: its consumer, its fleet at the replayed time, its clock; :meth:`run` is its thread."""

    def __init__(
        self,
        sid: str,
        settings: DashboardSettings,
        send: Send,
        ready: Callable[[str], bool],
        sleep: Callable[[float], None],
        on_end: Callable[[ReplaySession], None] = lambda _session: None,
    ) -> None:
        self.sid = sid
        self._on_end = on_end
        self.settings = settings
        self._send = send
        self._ready = ready
        self._sleep = sleep
        self._stop = threading.Event()
        self._pending: Seek | None = None
        self._pending_control: Control | None = None
        self.seek_: Seek | None = None
        self.clock: ReplayClock | None = None  # None while looking back
        self.lookback: Lookback | None = None
        self.playback = Playback(0.0)
        self.state = self._new_state()
        self.seq = 0
        self._lookback_until = math.inf
        self.needs_snapshot = False
        self.refused = 0
        self._tps: list[TopicPartition] = []
        self.rides: RideReplay | None = None  # made with the consumers, in run()
        self._riders_sent_at = -math.inf
        self._riders_version = -1

    def request(self, seek: Seek) -> None:
        self._pending = seek  # the green thread takes the latest: a scrub sends many, only the last one counts

    def control(self, control: Control) -> None:
        self._pending_control = control

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _new_state(self) -> FleetState:
        s = self.settings
        return FleetState(s.stale_after_s, s.drop_after_s, s.max_drivers)

    def run(self) -> None:
        consumer = None
        try:
            consumer = self._new_consumer()
            self.rides = RideReplay(self.settings, self._new_consumer(isolation_level="read_committed"))
            self._loop(consumer)
        except Exception as e:  # Kafka away, or a bug: this browser's replay ends, the dashboard goes on
            log.warning("a replay ended: %s: %s", type(e).__name__, e)
            if not self.stopped:
                payload = {"v": frames.VERSION, "id": self._replay_id(), "reason": f"The replay stopped: {e}"}
                self._send("replay_refused", payload, [self.sid])
                self._on_end(self)
        finally:
            if consumer is not None:
                consumer.close(autocommit=False)
            if self.rides is not None:
                self.rides.close()

    def _replay_id(self) -> int:
        seek = self._pending or self.seek_
        return seek.id if seek is not None else 0

    def _new_consumer(self, isolation_level: str = "read_uncommitted") -> KafkaConsumer:
        return lean_consumer(
            bootstrap_servers=self.settings.bootstrap_servers.split(","),
            client_id="dashboard-replay",
            isolation_level=isolation_level,
            group_id=None,  # no group: nothing committed, no other consumer sees this one
            enable_auto_commit=False,
            auto_offset_reset="latest",
            allow_auto_create_topics=False,
            max_poll_records=POLL_RECORDS,
            fetch_max_wait_ms=POLL_TIMEOUT_MS,
            fetch_max_bytes=1024 * 1024,
            max_partition_fetch_bytes=256 * 1024,
            reconnect_backoff_max_ms=1000,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            # Seeks are this consumer's daily bread, and every seek changes all its fetch positions: full fetch
            # requests (a few bytes more each) rather than kafka-python's incremental fetch sessions.
            enable_incremental_fetch_sessions=False,
        )

    def _loop(self, consumer: KafkaConsumer) -> None:
        tick_s = self.settings.tick_ms / 1000.0
        next_tick = next_sweep = time.monotonic()
        while not self.stopped:
            if self._pending is not None:
                seek, self._pending = self._pending, None
                self._seek(consumer, seek)
            if self._pending_control is not None and self.clock is not None:
                control, self._pending_control = self._pending_control, None
                self._control(control)
            if self.clock is None:
                self._look_back(consumer)
                self._sleep(0)
                continue
            self._read_ahead(consumer, max(0.0, next_tick - time.monotonic()))
            now = time.monotonic()
            if now >= next_tick:
                self._tick(now, sweep=now >= next_sweep)
                if now >= next_sweep:
                    next_sweep = now + SWEEP_EVERY_S
                next_tick = max(next_tick + tick_s, now)
            self._sleep(max(0.0, min(next_tick - time.monotonic(), tick_s)))

    # ---- seeking and looking back

    def _seek(self, consumer: KafkaConsumer, seek: Seek) -> None:
        """Every partition to the stale window before ``seek.t``; the split at ``seek.t`` ends the look-back."""
        topic = self.settings.topic
        partitions = consumer.partitions_for_topic(topic) or set()
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(self._tps)
        window_s = self.settings.stale_after_s
        beginnings = _by_partition(consumer.beginning_offsets(self._tps, timeout_ms=KAFKA_TIMEOUT_MS))
        ends = _by_partition(consumer.end_offsets(self._tps, timeout_ms=KAFKA_TIMEOUT_MS))
        since_ms = int((seek.t - window_s) * 1000)
        after_ms = math.floor(seek.t * 1000) + 1  # the first record timestamped after t
        starts = seek_offsets(self._offsets_for(consumer, since_ms), beginnings, ends)
        splits = seek_offsets(self._offsets_for(consumer, after_ms), beginnings, ends)
        for tp in self._tps:
            consumer.seek(tp, starts[tp.partition])
        self.seek_ = seek
        self._lookback_until = time.monotonic() + LOOKBACK_TIMEOUT_S
        self.lookback = Lookback(seek.t, window_s, splits)
        self.playback = Playback(seek.t)
        self.state = self._new_state()
        self.clock = None
        self._pending_control = None
        assert self.rides is not None
        self.rides.seek(seek.t)
        log.debug("replay seek to %.3f: %d records to look back on", seek.t, sum(splits[p] - starts[p] for p in starts))

    def _offsets_for(self, consumer: KafkaConsumer, timestamp_ms: int) -> dict[int, int | None]:
        found = consumer.offsets_for_times(dict.fromkeys(self._tps, timestamp_ms), timeout_ms=KAFKA_TIMEOUT_MS)
        return {tp.partition: (found[tp].offset if found.get(tp) is not None else None) for tp in self._tps}

    def _look_back(self, consumer: KafkaConsumer) -> None:
        lookback, rides = self.lookback, self.rides
        assert lookback is not None and self.seek_ is not None and rides is not None
        positions = {tp.partition: consumer.position(tp, timeout_ms=KAFKA_TIMEOUT_MS) for tp in self._tps}
        rides_done = rides.looked_back()
        if lookback.done(positions) and rides_done:
            self._start_playing(lookback, self.seek_)
            return
        if time.monotonic() > self._lookback_until:
            raise TimeoutError(f"reading the {self.settings.stale_after_s:g} s before the sought time took too long")
        # No pause() for partitions already through their range: with kafka-python 3.0.12 a paused partition's
        # fetched records could hold up the others' for good (a lookback that never ended, 1 seek in 10). Their
        # records go to the playback buffer instead, which the lookback's short range bounds.
        records = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=POLL_RECORDS)
        for partition_records in records.values():
            for record in partition_records:
                if not (lookback.covers(record.partition, record.offset) and lookback.take(record)):
                    self.playback.add(record)

    def _start_playing(self, lookback: Lookback, seek: Seek) -> None:
        self._apply(lookback.records(), seek.t)
        self.lookback = None
        self.clock = ReplayClock(seek.t, time.monotonic(), seek.speed, seek.playing)
        self.needs_snapshot = True
        self._riders_version = -1
        self._tick(time.monotonic(), sweep=False)

    # ---- playing

    def _control(self, control: Control) -> None:
        assert self.clock is not None
        self.clock.set(time.monotonic(), control.speed, control.playing, time.time())
        self.seek_ = Seek(control.id, self.clock.t, control.speed, control.playing)
        self.needs_snapshot = True  # the page learns the new speed and state at once

    def _read_ahead(self, consumer: KafkaConsumer, wait_s: float) -> None:
        """Poll while a partition is not yet far enough ahead of the replay clock, within the buffer's bound and
        :data:`READ_BUDGET_S` per tick, yielding to the other green threads between two polls.

        Whole polls, not pause() per partition (see :meth:`_look_back`): a partition ahead of the others fills
        the buffer up to its bound at most."""
        assert self.rides is not None
        self.rides.read_ahead()
        deadline = time.monotonic() + READ_BUDGET_S
        timeout_ms = min(POLL_TIMEOUT_MS, int(wait_s * 1000))
        while self._wants_records():
            records = consumer.poll(timeout_ms=timeout_ms, max_records=POLL_RECORDS)
            for partition_records in records.values():
                for record in partition_records:
                    self.playback.add(record)
            if not records or time.monotonic() >= deadline:
                return
            timeout_ms = 0  # more only if it is there already
            self._sleep(0)

    def _wants_records(self) -> bool:
        clock = self.clock
        assert clock is not None
        if self.playback.buffered >= MAX_BUFFERED:
            return False
        wanted_until = clock.now(time.monotonic()) + LEAD_S * clock.speed
        horizons = [self.playback.horizon(tp.partition) for tp in self._tps]
        return not (horizons and all(h is not None and h >= wanted_until for h in horizons))

    def _tick(self, mono: float, sweep: bool) -> None:
        clock, rides = self.clock, self.rides
        assert clock is not None and self.seek_ is not None and rides is not None
        t = clock.now(mono, time.time())
        self._apply(newest_per_key(self.playback.due(t)), t)
        rides.play(t, self.state.trail_of, sweep)
        if sweep:
            self.state.sweep(t)
        changes = self.state.take_changes()
        if not self._ready(self.sid):
            self.needs_snapshot = self.needs_snapshot or bool(changes)  # it missed a frame: a snapshot once drained
            return
        replay = {"id": self.seek_.id, "t": t, "speed": clock.speed, "playing": clock.playing}
        snapshot = self.needs_snapshot
        if snapshot:
            self.needs_snapshot = False
            drivers = self.state.snapshot()
            payload = frames.snapshot_payload(drivers, self.seq, t, self.settings.topic, self.state.stale_after_s)
            self._send("snapshot", {**payload, "replay": replay}, [self.sid])
        elif changes:
            self.seq += 1
            payload = frames.positions_payload(self.seq, t, changes.new, changes.changed, changes.gone)
            self._send("positions", {**payload, "replay": replay}, [self.sid])
        riders_version = rides.playback.riders.version
        if snapshot or riders_version != self._riders_version or mono - self._riders_sent_at >= RIDERS_EVERY_S:
            self._riders_version, self._riders_sent_at = riders_version, mono
            self._send("riders", {**rides.payload(t), "replay": replay}, [self.sid])

    def _apply(self, records: list[KafkaRecord], t: float) -> None:
        """Decode and apply records to this replay's fleet, as heard at replayed time ``t``."""
        now = time.time()
        fixes = []
        for record in records:
            fix = decode.FIXES(record.key, record.value, now)
            if isinstance(fix, Refusal):
                self.refused += 1  # the live feed counted and dead-lettered it already
            else:
                fixes.append((fix, record.partition, record.offset))
        self.state.apply_batch(fixes, t)


class RideReplay:
    """The riders of one replay: a read_committed consumer of its own over ``ride-requests`` and ``ride-matches``
    (every partition by manual assignment, no group), read from :data:`fleet.replay.RIDES_LOOKBACK_S` before the
    sought time into a :class:`fleet.replay.RidePlayback`. Ride topics that do not exist (no matcher ever ran)
    replay as no riders."""

    def __init__(self, settings: DashboardSettings, consumer: KafkaConsumer) -> None:
        self.topics = (settings.ride_request_topic, settings.ride_match_topic)
        self._consumer = consumer
        self._decoders: dict[str, Decoder[RideRequest] | Decoder[RideMatch]] = {
            settings.ride_request_topic: decode.REQUESTS,
            settings.ride_match_topic: decode.MATCHES,
        }
        self._tps: list[TopicPartition] = []
        self._splits: dict[TopicPartition, int] = {}
        self.playback = RidePlayback(MAX_RIDES_BUFFERED)
        self.refused = 0

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    def seek(self, t: float) -> None:
        """Every ride partition to the look-back before ``t``; the riders start over."""
        consumer = self._consumer
        self._tps = [
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(self._tps)
        self.playback = RidePlayback(MAX_RIDES_BUFFERED)
        if not self._tps:
            self._splits = {}
            return
        beginnings = consumer.beginning_offsets(self._tps, timeout_ms=KAFKA_TIMEOUT_MS)
        ends = consumer.end_offsets(self._tps, timeout_ms=KAFKA_TIMEOUT_MS)  # read_committed: the stable end
        starts = seek_offsets(self._offsets_for(int((t - RIDES_LOOKBACK_S) * 1000)), beginnings, ends)
        self._splits = seek_offsets(self._offsets_for(math.floor(t * 1000) + 1), beginnings, ends)
        for tp in self._tps:
            consumer.seek(tp, starts[tp])

    def _offsets_for(self, timestamp_ms: int) -> dict[TopicPartition, int | None]:
        found = self._consumer.offsets_for_times(dict.fromkeys(self._tps, timestamp_ms), timeout_ms=KAFKA_TIMEOUT_MS)
        return {tp: (found[tp].offset if found.get(tp) is not None else None) for tp in self._tps}

    def looked_back(self) -> bool:
        """Whether every request and answer up to the sought time is in; if not, read some more."""
        consumer = self._consumer
        if all(consumer.position(tp, timeout_ms=KAFKA_TIMEOUT_MS) >= split for tp, split in self._splits.items()):
            return True
        self._poll(POLL_TIMEOUT_MS)
        return False

    def read_ahead(self) -> None:
        """What is there already, while the buffer has room: rides are few next to fixes."""
        if self._tps and not self.playback.full:
            self._poll(0)

    def _poll(self, timeout_ms: int) -> None:
        now = time.time()
        records = self._consumer.poll(timeout_ms=timeout_ms, max_records=POLL_RECORDS)
        for tp, partition_records in records.items():
            decoder = self._decoders[tp.topic]
            for record in partition_records:
                message = decoder(record.key, record.value, now)
                if isinstance(message, Refusal):
                    self.refused += 1  # the live ride feed counted and dead-lettered it already
                else:
                    self.playback.add(record.timestamp, message)

    def play(self, t: float, track: Callable[[str], list[list[float]]], sweep: bool) -> None:
        """The riders as at replayed time ``t``: requests and answers due, pick-ups from the replayed fixes."""
        riders = self.playback.riders
        self.playback.apply_due(t)
        if sweep:
            riders.check_pickups(track, t)
            riders.sweep(t)

    def payload(self, t: float) -> dict[str, Any]:
        """The ``riders`` event as live sends it, for replayed time ``t``."""
        missing = [topic for topic in self.topics if not any(tp.topic == topic for tp in self._tps)]
        return {
            "v": frames.VERSION,
            "t": t,
            **riders_json(self.playback.riders, t, EVENT_RIDES),
            "invalid": {},
            "invalid_total": 0,
            "kafka": {"topics": list(self.topics), "connected": True, "missing": missing, "error": None},
        }


def _by_partition(offsets: dict[TopicPartition, int]) -> dict[int, int]:
    return {tp.partition: offset for tp, offset in offsets.items()}


class Timeline:
    """The time bar's range and histogram: what the driver topic still holds, fixes per bucket. Cached, since
    each look is ``TIMELINE_BUCKETS + 2`` offset look-ups; one consumer of its own, one look at a time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._cached: dict[str, Any] | None = None
        self._cached_at = -math.inf

    def get(self) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._cached_at >= TIMELINE_CACHE_S:
                try:
                    self._cached = self._look()
                except KafkaError as e:
                    self._close()
                    return {"v": frames.VERSION, "error": f"Kafka does not answer: {e}", **_empty_timeline()}
                self._cached_at = time.monotonic()
            assert self._cached is not None
            return self._cached

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None

    def _look(self) -> dict[str, Any]:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap.split(","),
                group_id=None,
                enable_auto_commit=False,
                client_id="dashboard-timeline",
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            )
        consumer = self._consumer
        now = time.time()
        tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
        if not tps:
            return {"v": frames.VERSION, "error": None, **_empty_timeline(), "end": now}
        ends = _by_partition(consumer.end_offsets(tps, timeout_ms=KAFKA_TIMEOUT_MS))
        first = consumer.offsets_for_times(dict.fromkeys(tps, 0), timeout_ms=KAFKA_TIMEOUT_MS)
        start = first_timestamp((v.offset, v.timestamp) if v is not None else None for v in first.values())
        if start is None or start >= now:
            return {"v": frames.VERSION, "error": None, **_empty_timeline(), "end": now}
        edges = bucket_edges(start, now, TIMELINE_BUCKETS)
        at_edges = []
        for edge in edges:
            found = consumer.offsets_for_times(dict.fromkeys(tps, int(edge * 1000)), timeout_ms=KAFKA_TIMEOUT_MS)
            at_edges.append({tp.partition: (v.offset if v is not None else None) for tp, v in found.items()})
        return {
            "v": frames.VERSION,
            "error": None,
            "topic": self.topic,
            "start": start,
            "end": now,
            "bucket_s": (now - start) / TIMELINE_BUCKETS,
            "counts": histogram(at_edges, ends),
        }


def _empty_timeline() -> dict[str, Any]:
    return {"start": None, "end": None, "bucket_s": None, "counts": []}
