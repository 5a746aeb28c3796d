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
shows (a snapshot, never a diff): a client that skipped one loses nothing. So are ``zones`` (every zone,
when the table changes) and ``zone_counts`` (the drivers inside each zone, at most once a second): the
zones' shapes, up to 45 KB each, go only when a zone is written or deleted, not with every count.
``zone_alerts`` is the one event that carries only what is new (``"full": false``); a client that could
not take it gets the newest alerts whole (``"full": true``, as with every snapshot) as soon as it can.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from flask_socketio import SocketIO
from socketio import packet as socketio_packet

from dashboard.audience import Audience
from dashboard.metrics import DashboardMetrics
from fleet import frames
from fleet.alerts import SNAPSHOT_EVENTS, AlertStore
from fleet.riders import Riders, riders_json
from fleet.state import FleetState

log = logging.getLogger(__name__)
NAMESPACE = "/"
# Most rides in one event (the newest); riders are a few hundred, this bounds a crowd.
EVENT_RIDES = 2000


class ZonesSource(Protocol):
    """What the ``zones`` and ``zone_counts`` events need: each a version that changes with it, and its body."""

    def version(self) -> int: ...

    def payload(self) -> dict[str, Any]: ...

    def counts_version(self) -> int: ...

    def counts_payload(self) -> dict[str, Any]: ...


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
        zones: ZonesSource | None = None,
        alerts: AlertStore | None = None,
    ) -> None:
        self._socketio = socketio
        self._state = state
        self._topic = topic
        self._metrics = metrics
        self._riders = riders
        self._feed_json = feed_json  # the ride feed's refusals and status, for the riders event
        self._clock = clock
        self._zones = zones
        self._alerts = alerts
        self._counters: dict[str, dict[str, int]] | None = None  # as last sent
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
        zones_version = self._zones.version() if self._zones is not None else None
        counts_version = self._zones.counts_version() if self._zones is not None else None
        new_alerts, counters = self._new_alerts(now, stats is not None)
        delivery = self.audience.plan(
            self._ready_clients(),
            self._clock(),
            bool(changes),
            stats is not None,
            riders_version,
            zones_version,
            None if self._alerts is None else bool(new_alerts) or counters is not None,
            counts_version,
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
        if delivery.zones and self._zones is not None:
            self.send("zones", {"v": frames.VERSION, "t": now, **self._zones.payload()}, delivery.zones)
        if delivery.zone_counts and self._zones is not None:
            counts = {"v": frames.VERSION, "t": now, **self._zones.counts_payload()}
            self.send("zone_counts", counts, delivery.zone_counts)
        if delivery.alerts_full:
            self.send("zone_alerts", self.alerts_payload(now, None), delivery.alerts_full)
        if delivery.alerts_new:
            self.send("zone_alerts", self.alerts_payload(now, new_alerts), delivery.alerts_new)

    def _new_alerts(self, now: float, second: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The alerts new since the previous tick, and the hour's counters when they changed (looked at once a
        second: they also change as old events age out of the hour)."""
        if self._alerts is None:
            return [], None
        new = self._alerts.take_new()
        if not (new or second):
            return new, None
        counters = self._alerts.counters(now)
        if counters == self._counters:
            return new, None
        self._counters = counters
        return new, counters

    def alerts_payload(self, now: float, new: list[dict[str, Any]] | None) -> dict[str, Any]:
        """``zone_alerts``: ``new`` ones only, or (None) the newest whole; the hour's counters either way."""
        alerts = self._alerts if self._alerts is not None else AlertStore()
        return {
            "v": frames.VERSION,
            "t": now,
            "full": new is None,
            "events": alerts.newest(SNAPSHOT_EVENTS) if new is None else new,
            "counters": self._counters if self._counters is not None else alerts.counters(now),
        }

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
