"""Who gets which event at a tick: the browsers' bookkeeping, without any I/O.

:class:`Audience` is the pure core of :class:`dashboard.push.Push`: it knows the connected clients,
which of them must start over with a snapshot (new, skipped a frame, asked to ``resync``) and when
each last got one, and which are due a ``riders`` event. Each tick, :meth:`Audience.plan` is told which
clients could take something now (their outgoing queue has drained, which only the sender can see)
and answers with a :class:`Delivery`; the sender encodes each event once and queues it for exactly
those clients. The clock is a parameter, so a test plays out minutes of ticks in microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# A client asking to resync at every tick (a broken or hostile page) costs one snapshot a second, not ten.
SNAPSHOT_MIN_INTERVAL_S = 1.0
# A ride that changed is told within this long; the counts age, so every client gets riders once a second.
RIDERS_MIN_INTERVAL_S = 0.25


@dataclass
class Client:
    needs_snapshot: bool = True
    snapshot_at: float = -math.inf  # monotonic time of its latest snapshot
    needs_riders: bool = True
    held: bool = False  # replaying: gets only stats until it is back live


@dataclass
class Delivery:
    """The clients each event of one tick goes to, and how many skipped the positions frame."""

    positions: list[str] = field(default_factory=list)
    snapshot: list[str] = field(default_factory=list)
    stats: list[str] = field(default_factory=list)
    riders: list[str] = field(default_factory=list)
    skipped: int = 0


class Audience:
    """The connected clients and what each of them must get next."""

    def __init__(self, snapshot_min_interval_s: float = SNAPSHOT_MIN_INTERVAL_S) -> None:
        self._clients: dict[str, Client] = {}
        self._snapshot_interval_s = snapshot_min_interval_s
        self._riders_version = -1
        self._riders_at = -math.inf

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
            client.needs_snapshot = client.needs_riders = True

    def plan(
        self, ready: set[str], now: float, frame: bool, stats: bool, riders_version: int | None = None
    ) -> Delivery:
        """Who gets what at a tick at monotonic ``now``: ``ready`` clients can take something; ``frame`` says a
        positions frame is due, ``stats`` the once-a-second stats, ``riders_version`` the riders' version
        (None: no riders event at all)."""
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
                behind.needs_riders = True  # the riders come with every snapshot
                delivery.snapshot.append(sid)
        if stats:
            delivery.stats = [sid for sid in ready if sid in self._clients]
        if riders_version is not None:
            delivery.riders = self._riders_due(ready, now, stats, riders_version)
        return delivery

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
