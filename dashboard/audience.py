"""Who gets which event at a tick: the browsers' bookkeeping, without any I/O.

:class:`Audience` is the pure core of :class:`dashboard.push.Push`: it knows the connected clients,
which of them must start over with a snapshot (new, skipped a frame, asked to ``resync``) and when
each last got one, and which are due a ``riders``, ``zones``, ``zone_counts`` or ``zone_alerts`` event. Each tick,
:meth:`Audience.plan` is told which clients could take something now (their outgoing queue has
drained, which only the sender can see) and answers with a :class:`Delivery`; the sender encodes
each event once and queues it for exactly those clients. The clock is a parameter, so a test plays
out minutes of ticks in microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# A client asking to resync at every tick (a broken or hostile page) costs one snapshot a second, not ten.
SNAPSHOT_MIN_INTERVAL_S = 1.0
# A ride that changed is told within this long; the counts age, so every client gets riders once a second.
RIDERS_MIN_INTERVAL_S = 0.25
# The zone table, and apart from it the counts inside, are told at most once a second (the counter's pace).
ZONES_MIN_INTERVAL_S = 1.0


@dataclass
class Client:
    needs_snapshot: bool = True
    snapshot_at: float = -math.inf  # monotonic time of its latest snapshot
    needs_riders: bool = True
    needs_zones: bool = True
    needs_zone_counts: bool = True
    # The newest alerts whole (it is new, it got a snapshot, or it missed some new ones while busy).
    needs_alerts: bool = True
    held: bool = False  # replaying: gets only stats until it is back live


@dataclass
class Delivery:
    """The clients each event of one tick goes to, and how many skipped the positions frame."""

    positions: list[str] = field(default_factory=list)
    snapshot: list[str] = field(default_factory=list)
    stats: list[str] = field(default_factory=list)
    riders: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    zone_counts: list[str] = field(default_factory=list)
    alerts_full: list[str] = field(default_factory=list)  # the newest zone alerts, whole
    alerts_new: list[str] = field(default_factory=list)  # only the alerts new at this tick
    skipped: int = 0


class Audience:
    """The connected clients and what each of them must get next."""

    def __init__(self, snapshot_min_interval_s: float = SNAPSHOT_MIN_INTERVAL_S) -> None:
        self._clients: dict[str, Client] = {}
        self._snapshot_interval_s = snapshot_min_interval_s
        self._riders_version = -1
        self._riders_at = -math.inf
        # (version last told, when) of the events sent when something changed, at most once a second
        self._told = {"needs_zones": (-1, -math.inf), "needs_zone_counts": (-1, -math.inf)}

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self):
        return iter(list(self._clients))

    def add(self, sid: str) -> None:
        """A client connected: it starts with a snapshot (a client already known keeps its rate limit)."""
        self._clients.setdefault(sid, Client())

    def remove(self, sid: str) -> None:
        self._clients.pop(sid, None)

    def request_snapshot(self, sid: str) -> None:
        """The client asked to ``resync``: it gets a snapshot as soon as its rate allows."""
        client = self._clients.get(sid)
        if client is not None:
            client.needs_snapshot = True

    def hold(self, sid: str) -> None:
        """The client replays the past: no live frames, snapshots or riders for it (stats still go)."""
        client = self._clients.get(sid)
        if client is not None:
            client.held = True

    def release(self, sid: str) -> None:
        """The client is back live: a snapshot as soon as its rate allows, then frames again."""
        client = self._clients.get(sid)
        if client is not None:
            client.held = False
            client.needs_snapshot = client.needs_riders = client.needs_alerts = True
            client.needs_zones = client.needs_zone_counts = True

    def plan(
        self,
        ready: set[str],
        now: float,
        frame: bool,
        stats: bool,
        riders_version: int | None = None,
        zones_version: int | None = None,
        new_alerts: bool | None = None,
        zone_counts_version: int | None = None,
    ) -> Delivery:
        """Who gets what at a tick at monotonic ``now``: ``ready`` clients can take something; ``frame`` says a
        positions frame is due, ``stats`` the once-a-second stats, ``riders_version`` the riders' version,
        ``zones_version`` the zone table's, ``new_alerts`` whether zone alerts arrived since the previous tick,
        ``zone_counts_version`` the counts inside the zones' (None for any of these: no such event at all)."""
        delivery = Delivery()
        if frame:
            for sid, client in self._clients.items():
                if client.held:
                    continue
                if sid not in ready:
                    client.needs_snapshot = True  # it missed a frame: it starts over once it has drained
                    delivery.skipped += 1
                elif not client.needs_snapshot:
                    delivery.positions.append(sid)
        for sid in ready:
            behind = self._clients.get(sid)
            due = behind is not None and not behind.held and behind.needs_snapshot
            if behind is not None and due and now - behind.snapshot_at >= self._snapshot_interval_s:
                behind.needs_snapshot, behind.snapshot_at = False, now
                behind.needs_riders = behind.needs_alerts = True  # they come with a snapshot
                behind.needs_zones = behind.needs_zone_counts = True
                delivery.snapshot.append(sid)
        if stats:
            delivery.stats = [sid for sid in ready if sid in self._clients]
        if riders_version is not None:
            delivery.riders = self._riders_due(ready, now, stats, riders_version)
        if zones_version is not None:
            delivery.zones = self._due_on_change("needs_zones", ready, now, zones_version)
        if zone_counts_version is not None:
            delivery.zone_counts = self._due_on_change("needs_zone_counts", ready, now, zone_counts_version)
        if new_alerts is not None:
            delivery.alerts_full, delivery.alerts_new = self._alerts_due(ready, new_alerts)
        return delivery

    def _due_on_change(self, needs: str, ready: set[str], now: float, version: int) -> list[str]:
        """The clients due an event sent when its ``version`` changed (at most once a second), or that
        ``needs`` it (new, after a snapshot, or busy when it last went): the ``Client`` flag of that name."""
        told, told_at = self._told[needs]
        if version != told and now - told_at >= ZONES_MIN_INTERVAL_S:
            self._told[needs] = (version, now)
            for client in self._clients.values():
                setattr(client, needs, True)
        due = []
        for sid, client in self._clients.items():
            if getattr(client, needs) and sid in ready and not client.held:
                setattr(client, needs, False)
                due.append(sid)
        return due

    def _alerts_due(self, ready: set[str], new: bool) -> tuple[list[str], list[str]]:
        """(clients that get the newest alerts whole, clients that get only the new ones).

        A client that cannot take the new ones now would miss them for good: it gets them whole later.
        """
        whole, fresh = [], []
        for sid, client in self._clients.items():
            if client.held:
                continue  # back live, it gets a snapshot, and the alerts whole with it
            if sid not in ready:
                client.needs_alerts = client.needs_alerts or new
            elif client.needs_alerts:
                client.needs_alerts = False
                whole.append(sid)
            elif new:
                fresh.append(sid)
        return whole, fresh

    def _riders_due(self, ready: set[str], now: float, stats: bool, version: int) -> list[str]:
        changed = version != self._riders_version
        if stats or (changed and now - self._riders_at >= RIDERS_MIN_INTERVAL_S):
            self._riders_version, self._riders_at = version, now
            for client in self._clients.values():
                client.needs_riders = True
        due = []
        for sid, client in self._clients.items():
            if client.needs_riders and sid in ready and not client.held:
                client.needs_riders = False  # a busy client keeps it due until it has drained
                due.append(sid)
        return due
