"""The Socket.IO sender: each tick's events encoded once and queued for the clients :mod:`dashboard.audience` names.

Each frame is built and encoded once per tick and the same encoded parts are queued for every ready
client (see :meth:`Push.send` for why not through ``socketio.emit``). A client whose outgoing queue
still holds something when a frame is due skips that frame and gets a fresh snapshot once its queue
has drained: Flask-SocketIO would otherwise queue every frame for a client that stopped reading,
without bound (Flask-SocketIO issue #663). So a client costs the server at most the packets of one
tick plus those its socket writer is sending. Who gets what (snapshots at most once a second per
client, ``riders`` with every snapshot and when rides change) is decided by the pure
:class:`~dashboard.audience.Audience`; this class only looks at Engine.IO's queues and writes.

Riders are few next to drivers, so each ``riders`` event is plain JSON holding every ride the map
shows (a snapshot, never a diff): a client that skipped one loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask_socketio import SocketIO
from socketio import packet as socketio_packet

from dashboard.audience import Audience
from dashboard.metrics import DashboardMetrics
from fleet import frames
from fleet.riders import Riders, riders_json
from fleet.state import FleetState

log = logging.getLogger(__name__)
NAMESPACE = "/"
# Most rides in one event (the newest); riders are a few hundred, this bounds a crowd.
EVENT_RIDES = 2000


class Push:
    """Frames, snapshots, stats and riders to the browsers, one tick at a time."""

    def __init__(
        self,
        socketio: SocketIO,
        state: FleetState,
        topic: str,
        metrics: DashboardMetrics,
        riders: Riders | None = None,
        feed_json: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._socketio = socketio
        self._state = state
        self._topic = topic
        self._metrics = metrics
        self._riders = riders
        self._feed_json = feed_json  # the ride feed's refusals and status, for the riders event
        self._clock = clock
        self.audience = Audience()
        self.seq = 0

    def __len__(self) -> int:
        return len(self.audience)

    def add(self, sid: str) -> None:
        """A client connected: it gets a snapshot at the next tick."""
        self.audience.add(sid)
        self._metrics.clients.set(len(self.audience))

    def remove(self, sid: str) -> None:
        self.audience.remove(sid)
        self._metrics.clients.set(len(self.audience))

    def request_snapshot(self, sid: str) -> None:
        self.audience.request_snapshot(sid)

    def disconnect_all(self) -> None:
        for sid in self.audience:
            self._socketio.server.disconnect(sid, namespace=NAMESPACE)

    def tick(self, now: float, stats: dict[str, Any] | None = None) -> None:
        """Broadcast what changed since the last tick, snapshots to the clients that need one, stats and riders.

        Which clients can take something is decided once, before anything is queued for this tick.
        """
        changes = self._state.take_changes()
        riders_version = self._riders.version if self._riders is not None else None
        delivery = self.audience.plan(
            self._ready_clients(), self._clock(), bool(changes), stats is not None, riders_version
        )
        if changes:
            self.seq += 1
            payload = frames.positions_payload(self.seq, now, changes.new, changes.changed, changes.gone)
            self.send("positions", payload, delivery.positions)
            self._metrics.frames.inc()
            self._metrics.push_latency.observe_many([now - d.timestamp for d in changes.changed])
            self._metrics.frames_skipped.inc(delivery.skipped)
        if delivery.snapshot:
            drivers = self._state.snapshot()
            payload = frames.snapshot_payload(drivers, self.seq, now, self._topic, self._state.stale_after_s)
            self.send("snapshot", payload, delivery.snapshot)
        if stats is not None:
            self.send("stats", stats, delivery.stats)
        if delivery.riders:
            self.send("riders", self.riders_payload(now), delivery.riders)

    def riders_payload(self, now: float) -> dict[str, Any]:
        riders = riders_json(self._riders, now, EVENT_RIDES) if self._riders is not None else {}
        return {"v": frames.VERSION, "t": now, **riders, **self._feed_json()}

    def _ready_clients(self) -> set[str]:
        return {sid for sid in self.audience if self._outgoing_packets(sid) == 0}

    def ready(self, sid: str) -> bool:
        """Whether this client's outgoing queue has drained (a replay skips frames for it otherwise)."""
        return self._outgoing_packets(sid) == 0

    def _outgoing_packets(self, sid: str) -> int:
        """Packets Engine.IO holds for this client and its writer has not taken yet.

        python-engineio keeps one unbounded queue per socket; its writer takes everything queued,
        then sends; a client that does not read leaves the next packets in the queue.
        """
        server = self._socketio.server
        eio_sid = server.manager.eio_sid_from_sid(sid, NAMESPACE)
        socket = server.eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket.queue.qsize() if socket is not None else 0

    def send(self, event: str, payload: dict[str, Any], sids: list[str]) -> None:
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
