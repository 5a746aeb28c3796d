"""The driver-location contract: what is a valid fix, and why others are refused."""

import json
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet import schema
from fleet.schema import Fix, InvalidMessage, encode_fix, parse_fix

NOW = 1_800_000_000.0


def message(**fields) -> bytes:
    base = {"driver_id": "d-1", "latitude": 40.75, "longitude": -73.98, "timestamp": NOW}
    base.update(fields)
    return schema.json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def reason_of(value: bytes | None) -> str:
    with pytest.raises(InvalidMessage) as caught:
        parse_fix(value, NOW)
    return caught.value.reason


def test_the_classic_four_fields_are_a_valid_fix():
    fix = parse_fix(message(driver_id=101), NOW)
    assert fix == Fix("101", 40.75, -73.98, NOW)


def test_optional_fields_are_kept_and_unknown_ones_ignored():
    fix = parse_fix(message(heading=90.5, speed_kmh=30, status="on_trip", seq=7, colour="red"), NOW)
    assert (fix.heading, fix.speed_kmh, fix.status, fix.seq) == (90.5, 30.0, "on_trip", 7)


def test_a_fix_round_trips_through_its_encoding():
    fix = Fix("d-9", 40.1234567, -73.7654321, NOW, heading=10.0, speed_kmh=22.5, status="available", seq=0)
    again = parse_fix(encode_fix(fix), NOW)
    assert again.latitude == 40.123457 and again.longitude == -73.765432
    assert (again.driver_id, again.status, again.seq) == ("d-9", "available", 0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", schema.NOT_JSON),
        (b"\xff\xfe", schema.NOT_JSON),
        (None, schema.NOT_JSON),
        (b"[1, 2]", schema.NOT_OBJECT),
        (b'"text"', schema.NOT_OBJECT),
        (b"x" * (schema.MAX_VALUE_BYTES + 1), schema.TOO_LARGE),
        (message(latitude=...), schema.MISSING_FIELD),
        (message(timestamp=...), schema.MISSING_FIELD),
        (message(latitude=200), schema.BAD_LATITUDE),
        (message(latitude="40.7"), schema.BAD_LATITUDE),
        (message(latitude=True), schema.BAD_LATITUDE),
        (b'{"driver_id":"a","latitude":NaN,"longitude":1,"timestamp":1}', schema.BAD_LATITUDE),
        (message(longitude=-180.5), schema.BAD_LONGITUDE),
        (b'{"driver_id":"a","latitude":1,"longitude":Infinity,"timestamp":1}', schema.BAD_LONGITUDE),
        (message(timestamp=4_070_908_800.0), schema.FUTURE_TIMESTAMP),  # 2099
        (message(timestamp=-1), schema.BAD_TIMESTAMP),
        (message(driver_id=""), schema.BAD_DRIVER_ID),
        (message(driver_id="x" * 65), schema.BAD_DRIVER_ID),
        (message(driver_id=None), schema.BAD_DRIVER_ID),
        (message(driver_id=True), schema.BAD_DRIVER_ID),
        (message(driver_id=1.5), schema.BAD_DRIVER_ID),
        (message(heading=361), schema.BAD_HEADING),
        (message(speed_kmh=-1), schema.BAD_SPEED),
        (message(status="parked"), schema.BAD_STATUS),
        (message(seq=-1), schema.BAD_SEQ),
        (message(seq=1.0), schema.BAD_SEQ),
    ],
)
def test_invalid_messages_are_refused_with_their_reason(value, reason):
    assert reason_of(value) == reason


def test_a_few_seconds_in_the_future_is_clock_skew_taken_as_now_and_more_is_refused():
    assert parse_fix(message(timestamp=NOW + 4.9), NOW).timestamp == NOW
    assert reason_of(message(timestamp=NOW + 5.1)) == schema.FUTURE_TIMESTAMP


def test_hostile_looking_ids_are_just_text():
    fix = parse_fix(message(driver_id="<img src=x onerror=alert(1)>"), NOW)
    assert fix.driver_id == "<img src=x onerror=alert(1)>"


def test_every_reason_is_listed():
    assert len(set(schema.REASONS)) == len(schema.REASONS)
    assert all(isinstance(r, str) and r == r.lower() for r in schema.REASONS)


def test_wall_clock_timestamps_are_accepted():
    assert math.isfinite(parse_fix(message(timestamp=time.time()), time.time()).timestamp)


# The fast path of parse_fix (msgspec and inline checks) must answer exactly what the full checks answer.
_NOW = 1_800_000_000.0
_near_fix = st.fixed_dictionaries(
    {
        "driver_id": st.text(max_size=66) | st.integers(-(10**21), 10**21) | st.floats() | st.none(),
        "latitude": st.floats(-91, 91) | st.floats() | st.integers(-100, 100) | st.integers(2**63, 2**66),
        "longitude": st.floats(-181, 181) | st.integers(-200, 200) | st.text(max_size=3),
        "timestamp": st.floats(_NOW - 1000, _NOW + 10) | st.floats() | st.integers(0, 2**65),
    },
    optional={
        "heading": st.none() | st.floats(-1, 361) | st.floats() | st.integers(-1, 400) | st.booleans(),
        "speed_kmh": st.none() | st.floats(-1, 1e300) | st.floats() | st.integers(0, 2**70),
        "status": st.none() | st.sampled_from([*schema.STATUSES, "Available", ""]) | st.integers(0, 3),
        "seq": st.none() | st.integers(-5, 2**65) | st.floats(0, 10) | st.booleans(),
    },
)


def _full_path(value: bytes, key: bytes | None) -> Fix | tuple[str, str]:
    try:
        fix = schema.validate_fix(schema.decode_object(value), _NOW)
        schema.check_key(key, fix.driver_id)
    except InvalidMessage as e:
        return (e.reason, e.detail)
    return fix


@settings(max_examples=400)
@given(_near_fix, st.sampled_from([None, b"k", b"same"]))
def test_the_fast_path_answers_what_the_full_checks_answer(message, key):
    value = json.dumps(message).encode()
    if key == b"same":
        key = str(message["driver_id"]).encode("utf-8", "surrogatepass")
    expected = _full_path(value, key)
    try:
        got: Fix | tuple[str, str] = parse_fix(value, _NOW, key)
    except InvalidMessage as e:
        got = (e.reason, e.detail)
    assert repr(got) == repr(expected)


_CLASSIC = b'"driver_id":"d1","latitude":40.5,"longitude":-73.5,"timestamp":1799999999.5'


@pytest.mark.parametrize(
    "value",
    [
        b"{" + _CLASSIC + b',"latitude":200.0}',  # a repeated field counts as its last occurrence
        b'{"latitude":200.0,' + _CLASSIC + b"}",
        b"{" + _CLASSIC + b',"latitude":41}',  # an integer where a float is expected
        b"{" + _CLASSIC + b',"speed_kmh":1e999}',
        b"{" + _CLASSIC + b',"speed_kmh":1e308}',
        b"{" + _CLASSIC + b',"timestamp":18446744073709551616}',
        b"{" + _CLASSIC + b',"driver_id":"a\\u0000b"}',
        b"{" + _CLASSIC + b',"driver_id":"\\ud83d\\ude9a"}',  # an escaped surrogate pair: one emoji
        b"{" + _CLASSIC + b',"driver_id":"\\ud800"}',
        b"\xef\xbb\xbf{" + _CLASSIC + b"}",
        b" {" + _CLASSIC + b"} \n",
        b"{" + _CLASSIC + b',"extra":{"a":[1,{"b":null}]}}',
        b"{" + _CLASSIC + b',"status":"Available"}',
        b"{" + _CLASSIC + b',"seq":1.0}',
        b"{" + _CLASSIC + b',"seq":true}',
        b"{" + _CLASSIC + b',"heading":null,"speed_kmh":null,"status":null,"seq":null}',
        b"{" + _CLASSIC + b',"heading":-0.0}',
        b"{" + _CLASSIC + b',"driver_id":"' + "\U0001f69a".encode() * 64 + b'"}',  # 64 characters, 256 bytes
        b"{" + _CLASSIC + b',"driver_id":"' + "\U0001f69a".encode() * 65 + b'"}',
    ],
)
def test_the_fast_path_answers_what_the_full_checks_answer_for_odd_json(value):
    expected = _full_path(value, None)
    try:
        got: Fix | tuple[str, str] = parse_fix(value, _NOW)
    except InvalidMessage as e:
        got = (e.reason, e.detail)
    assert repr(got) == repr(expected)
