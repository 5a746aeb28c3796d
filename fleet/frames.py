"""The dashboard-to-browser protocol v1: compact binary driver records and the event payloads.

``docs/api.md`` ("Socket.IO") is the prose version of this module. Each driver travels as one
24-byte little-endian record; its id string travels once per client, in ``ids``. Payloads are
plain dicts whose ``data`` is ``bytes``, which Socket.IO sends as a binary attachment (an
``ArrayBuffer`` in the browser).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fleet.schema import Status

VERSION = 1
RECORD = struct.Struct("<IiiiHHBBH")
RECORD_SIZE = RECORD.size  # 24
UNKNOWN_U16 = 65535
STATUS_CODES: dict[str | None, int] = {None: 0, Status.AVAILABLE: 1, Status.ON_TRIP: 2, Status.OFFLINE: 3}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_SPEED_MAX = UNKNOWN_U16 - 1


class Positioned(Protocol):
    """What a record is made of (``fleet.state.TrackedDriver`` has these attributes)."""

    idx: int
    driver_id: str
    latitude: float
    longitude: float
    timestamp: float
    heading: float | None
    speed_kmh: float | None
    status: str | None


@dataclass(frozen=True)
class Record:
    """One decoded record; ``timestamp`` is absolute epoch seconds (millisecond precision)."""

    idx: int
    latitude: float
    longitude: float
    timestamp: float
    heading: float | None
    speed_kmh: float | None
    status: str | None


def frame_t0(now: float) -> float:
    """The base time of a frame: whole seconds, so relative timestamps stay small integers."""
    return float(math.floor(now))


def encode_records(drivers: Sequence[Positioned], t0: float) -> bytes:
    """One 24-byte record per driver, in order."""
    buffer = bytearray(RECORD_SIZE * len(drivers))
    pack_into = RECORD.pack_into
    status_codes = STATUS_CODES
    offset = 0
    for d in drivers:
        relative_ms = round((d.timestamp - t0) * 1000.0)
        if not _I32_MIN <= relative_ms <= _I32_MAX:
            relative_ms = _I32_MIN if relative_ms < 0 else _I32_MAX
        heading = d.heading
        speed = d.speed_kmh
        pack_into(
            buffer,
            offset,
            d.idx,
            round(d.latitude * 1e6),
            round(d.longitude * 1e6),
            relative_ms,
            UNKNOWN_U16 if heading is None else round(heading * 10.0),
            UNKNOWN_U16 if speed is None else min(round(speed * 10.0), _SPEED_MAX),
            status_codes.get(d.status, 0),
            0,
            0,
        )
        offset += RECORD_SIZE
    return bytes(buffer)


def decode_records(data: bytes, t0: float) -> list[Record]:
    """The records in ``data`` (for tests, benchmarks and Python clients)."""
    if len(data) % RECORD_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of {RECORD_SIZE}-byte records")
    return [
        Record(
            idx=idx,
            latitude=lat / 1e6,
            longitude=lon / 1e6,
            timestamp=t0 + relative_ms / 1000.0,
            heading=None if heading == UNKNOWN_U16 else heading / 10.0,
            speed_kmh=None if speed == UNKNOWN_U16 else speed / 10.0,
            status=STATUS_NAMES.get(status),
        )
        for idx, lat, lon, relative_ms, heading, speed, status, _, _ in RECORD.iter_unpack(data)
    ]


def id_pairs(drivers: Iterable[Positioned]) -> list[list[Any]]:
    return [[d.idx, d.driver_id] for d in drivers]


def snapshot_payload(
    drivers: Sequence[Positioned], seq: int, now: float, topic: str, stale_after_s: float
) -> dict[str, Any]:
    """The ``snapshot`` event: every driver, with its id."""
    t0 = frame_t0(now)
    return {
        "v": VERSION,
        "seq": seq,
        "t": now,
        "t0": t0,
        "topic": topic,
        "stale_after_s": stale_after_s,
        "ids": id_pairs(drivers),
        "data": encode_records(drivers, t0),
    }


def positions_payload(
    seq: int, now: float, new: Iterable[Positioned], changed: Sequence[Positioned], gone: list[int]
) -> dict[str, Any]:
    """The ``positions`` event: ids first seen, drivers gone, and a record per changed driver."""
    t0 = frame_t0(now)
    return {
        "v": VERSION,
        "seq": seq,
        "t": now,
        "t0": t0,
        "ids": id_pairs(new),
        "gone": gone,
        "data": encode_records(changed, t0),
    }


class FleetView:
    """A client's copy of the fleet, built from the events the way the map page builds it.

    Python clients (tests, benchmarks, tools) use it to check what a browser would show.
    """

    def __init__(self) -> None:
        self.ids: dict[int, str] = {}
        self.records: dict[int, Record] = {}
        self.seq: int | None = None
        self.snapshots = 0
        self.frames = 0
        self.seq_gaps = 0

    def on_snapshot(self, payload: dict[str, Any]) -> None:
        _check_version(payload)
        self.ids = {idx: driver_id for idx, driver_id in payload["ids"]}
        self.records = {r.idx: r for r in decode_records(payload["data"], payload["t0"])}
        self.seq = payload["seq"]
        self.snapshots += 1

    def on_positions(self, payload: dict[str, Any]) -> bool:
        """Apply a frame; False when it shows frames were missed (the client should ``resync``)."""
        _check_version(payload)
        if self.seq is not None and payload["seq"] <= self.seq:
            return True  # already contained in the snapshot
        in_order = self.seq is None or payload["seq"] == self.seq + 1
        self.seq_gaps += not in_order
        self.seq = payload["seq"]
        for idx, driver_id in payload["ids"]:
            self.ids[idx] = driver_id
        for idx in payload["gone"]:
            self.ids.pop(idx, None)
            self.records.pop(idx, None)
        for record in decode_records(payload["data"], payload["t0"]):
            self.records[record.idx] = record
        self.frames += 1
        return in_order

    def by_driver_id(self) -> dict[str, Record]:
        return {self.ids[idx]: record for idx, record in self.records.items() if idx in self.ids}


def _check_version(payload: dict[str, Any]) -> None:
    if payload.get("v") != VERSION:
        raise ValueError(f"protocol version {payload.get('v')!r}, this client speaks {VERSION}")
