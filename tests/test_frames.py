"""Protocol v1 frames: the 24-byte record layout, the event payloads, and a client view built from them."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet import frames
from fleet.frames import STATUS_CODES
from fleet.schema import Fix, Status
from fleet.state import FleetState
from tests.conftest import ROOT

T0 = 1_800_000_000.0


class D:
    """A driver as the encoder sees it."""

    def __init__(self, idx, driver_id="x", lat=40.7, lon=-73.9, ts=T0, heading=None, speed=None, status=None):
        self.idx, self.driver_id, self.latitude, self.longitude = idx, driver_id, lat, lon
        self.timestamp, self.heading, self.speed_kmh, self.status = ts, heading, speed, status


def test_a_record_is_24_little_endian_bytes_in_the_documented_order():
    data = frames.encode_records(
        [D(7, lat=40.7128, lon=-74.006, ts=T0 + 1.5, heading=28.5, speed=31.2, status="on_trip")], T0
    )
    assert len(data) == 24
    assert struct.unpack_from("<I", data, 0)[0] == 7
    assert struct.unpack_from("<i", data, 4)[0] == 40712800
    assert struct.unpack_from("<i", data, 8)[0] == -74006000
    assert struct.unpack_from("<i", data, 12)[0] == 1500
    assert struct.unpack_from("<H", data, 16)[0] == 285
    assert struct.unpack_from("<H", data, 18)[0] == 312
    assert data[20] == 2
    assert data[21:24] == b"\x00\x00\x00"


def test_records_round_trip_with_unknowns_and_every_status():
    drivers = [
        D(0, heading=None, speed=None, status=None),
        D(1, heading=360.0, speed=0.0, status="available"),
        D(2, lat=-90.0, lon=180.0, status="offline"),
        D(3, lat=89.999999, lon=-179.999999, ts=T0 - 42.001, status="on_trip"),
    ]
    records = frames.decode_records(frames.encode_records(drivers, T0), T0)
    assert [r.status for r in records] == [None, "available", "offline", "on_trip"]
    assert records[0].heading is None and records[0].speed_kmh is None
    assert (records[1].heading, records[1].speed_kmh) == (360.0, 0.0)
    assert (records[2].latitude, records[2].longitude) == (-90.0, 180.0)
    assert records[3].latitude == pytest.approx(89.999999, abs=1e-9)
    assert records[3].timestamp == pytest.approx(T0 - 42.001, abs=1e-6)


def test_huge_speeds_and_ancient_timestamps_are_clamped_not_wrapped():
    record = frames.decode_records(frames.encode_records([D(0, speed=1e9, ts=0.0)], T0), T0)[0]
    assert record.speed_kmh == 6553.4
    assert record.timestamp == pytest.approx(T0 - 2**31 / 1000)


def packed_one_by_one(drivers: list[D], t0: float) -> bytes:
    """The records as docs/api.md describes them, packed one by one with ``struct`` (what the encoder
    did before it went column by column with numpy)."""
    out = b""
    for d in drivers:
        ms = min(max(round((d.timestamp - t0) * 1000.0), -(2**31)), 2**31 - 1)
        heading = frames.UNKNOWN_U16 if d.heading is None else round(d.heading * 10.0)
        speed = frames.UNKNOWN_U16 if d.speed_kmh is None else min(round(d.speed_kmh * 10.0), 65534)
        latitude, longitude = round(d.latitude * 1e6), round(d.longitude * 1e6)
        status = STATUS_CODES.get(d.status, 0)
        out += frames.RECORD.pack(d.idx, latitude, longitude, ms, heading, speed, status, 0, 0)
    return out


def finite(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


drivers = st.lists(
    st.builds(
        D,
        idx=st.integers(0, 2**32 - 1),
        lat=finite(-90, 90),
        lon=finite(-180, 180),
        ts=finite(0, 4e9) | st.sampled_from([T0 + 0.0005, T0 + 0.0015, T0 - 0.0025]),  # halves: to even
        heading=st.none() | finite(0, 360) | st.sampled_from([0.05, 0.15, 359.95]),
        speed=st.none() | finite(0, 1e300) | st.sampled_from([0.25, 6553.45]),
        status=st.sampled_from([None, *STATUS_CODES]),
    ),
    max_size=30,
)


@given(drivers)
def test_the_column_encoder_writes_the_bytes_of_the_documented_record_for_any_drivers(batch):
    assert frames.encode_records(batch, T0) == packed_one_by_one(batch, T0)


def test_decode_refuses_a_partial_record():
    with pytest.raises(ValueError, match="24-byte"):
        frames.decode_records(b"\x00" * 25, T0)


def test_snapshot_payload_has_the_protocol_fields():
    payload = frames.snapshot_payload([D(0, "a"), D(1, "<b>")], seq=41, now=T0 + 0.7, topic="t", stale_after_s=30)
    assert set(payload) == {"v", "seq", "t", "t0", "topic", "stale_after_s", "ids", "data"}
    assert (payload["v"], payload["seq"], payload["t0"]) == (1, 41, T0)
    assert payload["ids"] == [[0, "a"], [1, "<b>"]]
    assert isinstance(payload["data"], bytes) and len(payload["data"]) == 48


def test_positions_payload_has_the_protocol_fields():
    payload = frames.positions_payload(5, T0 + 0.2, new=[D(3, "n")], changed=[D(3, "n"), D(1)], gone=[9])
    assert set(payload) == {"v", "seq", "t", "t0", "ids", "gone", "data"}
    assert (payload["seq"], payload["ids"], payload["gone"]) == (5, [[3, "n"]], [9])
    assert [r.idx for r in frames.decode_records(payload["data"], payload["t0"])] == [3, 1]


def test_a_client_view_follows_the_state_through_snapshot_and_frames():
    state = FleetState(max_drivers=2)
    state.apply(Fix("a", 40.0, -73.0, T0), 0, 0, T0)
    view = frames.FleetView()
    view.on_snapshot(frames.snapshot_payload(state.snapshot(), 0, T0, "t", 30))
    state.take_changes()
    state.apply(Fix("a", 40.5, -73.0, T0 + 1), 0, 1, T0 + 1)
    state.apply(Fix("b", 41.0, -74.0, T0 + 1), 0, 2, T0 + 1)
    state.apply(Fix("c", 42.0, -75.0, T0 + 2), 0, 3, T0 + 2)  # evicts a
    changes = state.take_changes()
    assert view.on_positions(frames.positions_payload(1, T0 + 2, changes.new, changes.changed, changes.gone))
    held = view.by_driver_id()
    assert sorted(held) == ["b", "c"]
    assert (held["c"].latitude, held["c"].longitude) == (42.0, -75.0)


def test_a_client_view_notices_a_missed_frame_and_ignores_old_ones():
    view = frames.FleetView()
    view.on_snapshot(frames.snapshot_payload([D(0, "a")], 10, T0, "t", 30))
    assert view.on_positions(frames.positions_payload(10, T0, [], [D(0, lat=1.0)], []))  # already in the snapshot
    assert view.records[0].latitude == 40.7
    assert not view.on_positions(frames.positions_payload(12, T0, [], [D(0, lat=2.0)], []))
    assert view.seq_gaps == 1


def test_a_client_view_refuses_another_protocol_version():
    with pytest.raises(ValueError, match="version"):
        frames.FleetView().on_snapshot({"v": 2})


def test_the_pages_status_table_is_the_protocols_and_names_every_status():
    """static/js/protocol.js decodes the status byte with a table of its own: it must be this one."""
    source = (ROOT / "static" / "js" / "protocol.js").read_text()
    table = re.search(r"export const STATUS = Object\.freeze\(\{([^}]*)\}\)", source).group(1)
    js = {name.strip(): int(code) for name, code in (pair.split(":") for pair in table.split(","))}
    python = {("unknown" if status is None else str(status)): code for status, code in STATUS_CODES.items()}
    assert js == python
    assert set(js) - {"unknown"} == {str(s) for s in Status}
