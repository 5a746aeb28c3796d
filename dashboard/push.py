"""Who gets which event: one frame per tick for every client that can take it, snapshots for the rest.

Each frame is built and encoded once per tick and the same encoded parts are queued for every
ready client (see :meth:`Push._emit` for why not through ``socketio.emit``). A client whose
outgoing queue still holds something when a frame is due skips that frame and gets a fresh snapshot
once its queue has drained: Flask-SocketIO would otherwise queue every frame for a client that
stopped reading, without bound (Flask-SocketIO issue #663). So a client costs the server at most
the packets of one tick plus those its socket writer is sending.

A snapshot (the whole fleet) is the costly event, and a client can ask for one with ``resync``: each
client gets at most one snapshot per :data:`SNAPSHOT_MIN_INTERVAL_S`, the first one at once. A
client waiting for its snapshot gets no frames meanwhile (it would only ask again).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask_socketio import SocketIO
from socketio import packet as socketio_packet

from dashboard.metrics import DashboardMetrics
from fleet import frames
from fleet.state import FleetState

log = logging.getLogger(__name__)
NAMESPACE = "/"
# A client asking to resync at every tick (a broken or hostile page) costs one snapshot a second, not ten.
SNAPSHOT_MIN_INTERVAL_S = 1.0


@dataclass
class Client:
    needs_snapshot: bool = True
    snapshot_at: float = -math.inf  # monotonic time of its latest snapshot

    def snapshot_due(self, now: float, min_interval_s: float = SNAPSHOT_MIN_INTERVAL_S) -> bool:
        """Whether it gets a snapshot at a tick at monotonic ``now``: it needs one and had none for a while."""
        return self.needs_snapshot and now - self.snapshot_at >= min_interval_s


class Push:
    """The Socket.IO side of the dashboard: clients, frames, snapshots and stats."""

    def __init__(
        self,
        socketio: SocketIO,
        state: FleetState,
        topic: str,
        metrics: DashboardMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._socketio = socketio
        self._clock = clock
        self._state = state
        self._topic = topic
        self._metrics = metrics
        self._clients: dict[str, Client] = {}
        self.seq = 0

    def __len__(self) -> int:
        return len(self._clients)

    def add(self, sid: str) -> None:
        """A client connected: it gets a snapshot at the next tick."""
        self._clients[sid] = Client()
        self._metrics.clients.set(len(self._clients))

    def remove(self, sid: str) -> None:
        self._clients.pop(sid, None)
        self._metrics.clients.set(len(self._clients))

    def disconnect_all(self) -> None:
        for sid in list(self._clients):
            self._socketio.server.disconnect(sid, namespace=NAMESPACE)

    def request_snapshot(self, sid: str) -> None:
        """The client asked to ``resync``: it gets a snapshot as soon as its rate allows."""
        client = self._clients.get(sid)
        if client is not None:
            client.needs_snapshot = True

    def tick(self, now: float, stats: dict[str, Any] | None = None) -> None:
        """Broadcast what changed since the last tick, snapshots to the clients that need one, and stats.

        Which clients can take something is decided once, before anything is queued for this tick.
        """
        monotonic_now = self._clock()
        changes = self._state.take_changes()
        ready = self._ready_clients()
        if changes:
            self.seq += 1
            payload = frames.positions_payload(self.seq, now, changes.new, changes.changed, changes.gone)
            targets = [sid for sid in ready if not self._clients[sid].needs_snapshot]
            self._emit("positions", payload, targets)
            self._metrics.frames.inc()
            self._metrics.push_latency.observe_many([now - d.timestamp for d in changes.changed])
            for sid, client in self._clients.items():
                if sid not in ready:
                    client.needs_snapshot = True
                    self._metrics.frames_skipped.inc()
        behind = [sid for sid in ready if self._clients[sid].snapshot_due(monotonic_now)]
        if behind:
            drivers = self._state.snapshot()
            payload = frames.snapshot_payload(drivers, self.seq, now, self._topic, self._state.stale_after_s)
            self._emit("snapshot", payload, behind)
            for sid in behind:
                self._clients[sid].needs_snapshot = False
                self._clients[sid].snapshot_at = monotonic_now
        if stats is not None:
            self._emit("stats", stats, list(ready))
        self.after_frames(now, ready, stats is not None, set(behind))

    def after_frames(self, now: float, ready: set[str], stats_tick: bool, started_over: set[str]) -> None:
        """Hook for events beside the fleet's frames, sent to ``ready``: the clients that could take this tick's.

        ``started_over``: the clients that got a snapshot at this tick.
        """

    def _ready_clients(self) -> set[str]:
        return {sid for sid in self._clients if self._outgoing_packets(sid) == 0}

    def _outgoing_packets(self, sid: str) -> int:
        """Packets Engine.IO holds for this client and its writer has not taken yet.

        python-engineio keeps one unbounded queue per socket; its writer takes everything queued,
        then sends; a client that does not read leaves the next packets in the queue.
        """
        server = self._socketio.server
        eio_sid = server.manager.eio_sid_from_sid(sid, NAMESPACE)
        socket = server.eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket.queue.qsize() if socket is not None else 0

    def _emit(self, event: str, payload: dict[str, Any], sids: list[str]) -> None:
        """Encode the event once, then queue it for each client as Engine.IO packets of its own.

        Not ``socketio.emit(to=sids)``: python-socketio hands the same Engine.IO packet objects to
        every recipient, and python-engineio caches each packet's encoding in the object, so a binary
        attachment first encoded raw for a websocket client reaches a long-polling client (a browser
        before its upgrade) still raw, and that client's poll fails with HTTP 500 (TypeError in
        ``Payload.encode``; python-engineio 4.15.1, python-socketio 5.18.1).
        """
        if not sids:
            return
        server = self._socketio.server
        encoded = server.packet_class(socketio_packet.EVENT, namespace=NAMESPACE, data=[event, payload]).encode()
        parts = encoded if isinstance(encoded, list) else [encoded]
        for sid in sids:
            eio_sid = server.manager.eio_sid_from_sid(sid, NAMESPACE)
            if eio_sid is not None:
                for part in parts:
                    server.eio.send(eio_sid, part)
