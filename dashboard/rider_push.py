"""The ``riders`` event beside the fleet's frames: the rides on the map and the panel's counts.

Riders are few next to drivers, so each ``riders`` event is plain JSON holding every ride the map
shows (a snapshot, never a diff): a client that skipped one loses nothing. It goes to every ready
client once a second (the one-minute counts age even when nothing happens), sooner when a ride
changed (at most every :data:`RIDERS_MIN_INTERVAL_S`), and with every snapshot a client gets (after
it connects or asks to ``resync``; so a ``resync`` flood gets no more of them than of snapshots).
The binary driver frames are :class:`dashboard.push.Push`'s, untouched: this class only adds its
event after them, to the clients that were ready before them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask_socketio import SocketIO

from dashboard.metrics import DashboardMetrics
from dashboard.push import Push
from fleet import frames
from fleet.riders import Riders, riders_json
from fleet.state import FleetState

RIDERS_MIN_INTERVAL_S = 0.25
# Most rides in one event (the newest); riders are a few hundred, this bounds a crowd.
EVENT_RIDES = 2000


class RiderPush(Push):
    """:class:`Push` plus the ``riders`` event (docs/api.md, "Socket.IO")."""

    def __init__(
        self,
        socketio: SocketIO,
        state: FleetState,
        topic: str,
        metrics: DashboardMetrics,
        riders: Riders,
        feed_json: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(socketio, state, topic, metrics, clock)
        self._riders = riders
        self._feed_json = feed_json  # the ride consumer's refusals and status, for the event
        self._needs_riders: set[str] = set()
        self._sent_version = -1
        self._sent_at = -float("inf")

    def remove(self, sid: str) -> None:
        super().remove(sid)
        self._needs_riders.discard(sid)

    def after_frames(self, now: float, ready: set[str], stats_tick: bool, started_over: set[str]) -> None:
        """``riders`` to whoever is due one and was ready for this tick's frames."""
        changed = self._riders.version != self._sent_version
        if stats_tick or (changed and self._clock() - self._sent_at >= RIDERS_MIN_INTERVAL_S):
            due = set(self._clients)
            self._sent_version = self._riders.version
            self._sent_at = self._clock()
        else:
            due = (self._needs_riders | started_over) & set(self._clients)
        targets = [sid for sid in due if sid in ready]
        self._needs_riders = due - ready  # a busy client gets the next riders event when it has drained
        if targets:
            self._emit("riders", self.riders_payload(now), targets)

    def riders_payload(self, now: float) -> dict[str, Any]:
        return {"v": frames.VERSION, "t": now, **riders_json(self._riders, now, EVENT_RIDES), **self._feed_json()}
