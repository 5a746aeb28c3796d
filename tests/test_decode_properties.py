"""The decode boundary is total: for any key and value, every decoder returns a message or a documented refusal.

Hypothesis draws arbitrary bytes, arbitrary JSON (deep, wide, huge numbers, every Unicode category) and
mutations of valid messages. A decoder may refuse anything, but it must never raise, never refuse with a
reason it does not document, never answer ``internal_error`` (that would be a bug of ours), and whatever it
accepts must be safe for everything after it: finite numbers in range, ids that encode to UTF-8 and hold
no control characters. The profile (tests/conftest.py) is derandomized, so CI sees the same examples.
"""

from __future__ import annotations

import json
import math
import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleet import decode
from fleet.decode import INTERNAL_ERROR, Refusal
from fleet.rides import MAX_DISTANCE_M, MAX_ETA_S, RideMatch, RideRequest, parse_commit_metadata
from fleet.schema import MAX_FUTURE_S, MAX_SEQ, STATUSES, Fix, nests_deeper_than
from fleet.zones import MAX_NAME_CHARS, MAX_RADIUS_M, Zone, ZoneDeleted, ZoneEvent, encode_zone

NOW = 1_800_000_000.0
FIELD_NAMES = (
    "driver_id",
    "latitude",
    "longitude",
    "timestamp",
    "heading",
    "speed_kmh",
    "status",
    "seq",
    "request_id",
    "rider_id",
    "outcome",
    "requested_at",
    "distance_m",
    "eta_s",
    "driver_latitude",
    "driver_longitude",
    "type",
    "id",
    "geometry",
    "properties",
    "coordinates",
    "name",
    "radius_m",
    "dwell_s",
    "hysteresis_m",
    "zone_id",
    "zone_name",
    "event",
    "source",
)
CONTROL = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]}

# JSON values of every kind: huge and tiny numbers, text from every Unicode category (lone surrogates
# included: json.dumps writes them as escapes, which the parser reads back into Python strings).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=80)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.sampled_from(FIELD_NAMES), children),
    max_leaves=30,
)


def valid_fix(draw: st.DrawFn) -> dict:
    return {
        "driver_id": draw(st.text(min_size=1, max_size=64) | st.integers(0, 10**20)),
        "latitude": draw(st.floats(-90, 90)),
        "longitude": draw(st.floats(-180, 180)),
        "timestamp": draw(st.floats(NOW - 1000, NOW + 10)),
        "heading": draw(st.none() | st.floats(0, 360)),
        "status": draw(st.none() | st.sampled_from(STATUSES)),
        "seq": draw(st.none() | st.integers(-5, 2**64)),
    }


def valid_request(draw: st.DrawFn) -> dict:
    return {
        "request_id": draw(st.text(min_size=1, max_size=64)),
        "rider_id": draw(st.text(min_size=1, max_size=64)),
        "latitude": draw(st.floats(-90, 90)),
        "longitude": draw(st.floats(-180, 180)),
        "timestamp": draw(st.floats(NOW - 1000, NOW + 10)),
    }


def valid_match(draw: st.DrawFn) -> dict:
    return {
        **valid_request(draw),
        "outcome": draw(st.sampled_from(["matched", "no_driver"])),
        "requested_at": draw(st.floats(NOW - 1000, NOW)),
        "driver_id": draw(st.text(min_size=1, max_size=64)),
        "distance_m": draw(st.floats(0, 2 * MAX_DISTANCE_M)),
        "eta_s": draw(st.integers(-1, 2 * MAX_ETA_S) | st.integers(10**300, 10**301)),
        "driver_latitude": draw(st.floats(-90, 90)),
        "driver_longitude": draw(st.floats(-180, 180)),
    }


def valid_zone(draw: st.DrawFn) -> dict:
    lat, lon = draw(st.floats(-80, 80)), draw(st.floats(-170, 170))
    properties = {
        "name": draw(st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=MAX_NAME_CHARS + 2)),
        "dwell_s": draw(st.none() | st.floats(-1, 1e6)),
        "hysteresis_m": draw(st.none() | st.floats(-1, 2000)),
    }
    if draw(st.booleans()):
        properties["radius_m"] = draw(st.floats(-1, 2 * MAX_RADIUS_M))
        geometry = {"type": "Point", "coordinates": [lon, lat]}
    else:
        corners = draw(st.lists(st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)), min_size=3, max_size=8))
        ring = [[lon + dx, lat + dy] for dx, dy in corners]
        geometry = {"type": "Polygon", "coordinates": [ring + ring[:1]]}
    return {"type": "Feature", "id": draw(st.text(max_size=70)), "geometry": geometry, "properties": properties}


def valid_event(draw: st.DrawFn) -> dict:
    return {
        "driver_id": draw(st.text(min_size=1, max_size=64)),
        "zone_id": draw(st.text(min_size=1, max_size=64)),
        "zone_name": draw(st.text(min_size=1, max_size=MAX_NAME_CHARS)),
        "event": draw(st.sampled_from(["enter", "exit", "dwell", "leave"])),
        "latitude": draw(st.floats(-90, 90)),
        "longitude": draw(st.floats(-180, 180)),
        "timestamp": draw(st.floats(NOW - 1000, NOW + 10)),
        "source": {"partition": draw(st.integers(-1, 100)), "offset": draw(st.integers(-1, 2**64))},
    }


@st.composite
def mutated(draw: st.DrawFn, make) -> bytes:
    """A valid message with some fields replaced by arbitrary JSON, removed, or its bytes cut or flipped."""
    message = make(draw)
    for name in draw(st.lists(st.sampled_from(sorted(message)), max_size=3)):
        if draw(st.booleans()):
            message[name] = draw(json_values)
        else:
            message.pop(name, None)
    raw = json.dumps(message).encode()
    cut = draw(st.integers(0, 3))
    if cut == 1:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif cut == 2 and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
    return raw


deep = st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n) | st.integers(1, 5000).map(
    lambda n: b'{"a":' * n + b"1" + b"}" * n
)
values = (
    st.none()
    | st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | deep
    | st.sampled_from([b"\xff", b"\xed\xa0\x80", b'"\\ud800"', b"1" * 5000, b"-" + b"9" * 4400, b"NaN", b"1e999"])
)
keys = st.none() | st.binary(max_size=70) | st.text(max_size=70).map(lambda t: t.encode("utf-8", "surrogatepass"))


def check(decoder: decode.Decoder, result: object, kind: type) -> None:
    if isinstance(result, Refusal):
        assert result.reason in decoder.reasons, result
        assert result.reason != INTERNAL_ERROR, f"the decoder itself failed: {result.detail}"
        assert isinstance(result.detail, str) and result.detail.isascii()
        return
    assert isinstance(result, kind)
    json.dumps(result.to_message(), ensure_ascii=False, allow_nan=False).encode("utf-8")  # safe to serve
    for text in _texts(result):
        assert text and not CONTROL & set(text) and text.encode("utf-8")


def _texts(message: object) -> list[str]:
    names = ("driver_id", "request_id", "rider_id", "zone_id", "zone_name")
    return [getattr(message, n) for n in names if getattr(message, n, None) is not None]


# The decoders are the boundary: more examples for them than Hypothesis's default 100 (about 3 s each).
DECODER_EXAMPLES = 500


@settings(max_examples=DECODER_EXAMPLES)
@given(keys, values | mutated(valid_fix))
@example(None, b'{"driver_id":"x","latitude":1' + b"0" * 400 + b',"longitude":0,"timestamp":1}')
@example(b"attacker", b'{"driver_id":"victim","latitude":1,"longitude":0,"timestamp":1}')
def test_any_record_of_driver_location_is_a_fix_or_a_documented_refusal(key, value):
    result = decode.FIXES(key, value, NOW)
    check(decode.FIXES, result, Fix)
    if isinstance(result, Fix):
        assert -90 <= result.latitude <= 90 and -180 <= result.longitude <= 180
        assert math.isfinite(result.timestamp) and result.timestamp <= NOW, "a fix from the future cannot pin a driver"
        assert result.seq is None or 0 <= result.seq <= MAX_SEQ
        assert key is None or key == result.driver_id.encode(), "no record moves another driver"


@settings(max_examples=DECODER_EXAMPLES)
@given(keys, values | mutated(valid_request))
def test_any_record_of_ride_requests_is_a_request_or_a_documented_refusal(key, value):
    result = decode.REQUESTS(key, value, NOW)
    check(decode.REQUESTS, result, RideRequest)
    if isinstance(result, RideRequest):
        assert -90 <= result.latitude <= 90 and result.timestamp <= NOW


@settings(max_examples=DECODER_EXAMPLES)
@given(keys, values | mutated(valid_match))
def test_any_record_of_ride_matches_is_an_answer_or_a_documented_refusal(key, value):
    result = decode.MATCHES(key, value, NOW)
    check(decode.MATCHES, result, RideMatch)
    if isinstance(result, RideMatch) and result.eta_s is not None:
        assert 0 <= result.eta_s <= MAX_ETA_S and 0 <= result.distance_m <= MAX_DISTANCE_M
        assert math.isfinite(3.0 * result.eta_s), "the riders' sweep multiplies it"


@settings(max_examples=DECODER_EXAMPLES)
@given(keys, values | mutated(valid_zone))
@example(
    b"z",
    b'{"type":"Feature","properties":{"name":"x"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}',
)
@example(b"z", None)
def test_any_record_of_zones_is_a_zone_a_deletion_or_a_documented_refusal(key, value):
    result = decode.ZONES(key, value, NOW)
    if isinstance(result, Refusal):
        check(decode.ZONES, result, Zone)
        return
    assert key is not None
    if isinstance(result, ZoneDeleted):
        assert value is None and result.zone_id.encode() == key
        return
    assert isinstance(result, Zone) and result.zone_id.encode() == key
    assert result.name and result.name == result.name.strip() and len(result.name) <= MAX_NAME_CHARS
    assert not CONTROL & set(result.name + result.zone_id)
    assert 0 <= result.hysteresis_m <= 1000 and (result.dwell_s is None or math.isfinite(result.dwell_s))
    assert result.kind != "circle" or 0 < result.radius_m <= MAX_RADIUS_M
    min_lat, min_lon, max_lat, max_lon = result.bounds
    assert -90 <= min_lat <= max_lat <= 90 and -180 <= min_lon <= max_lon <= 180
    assert decode.ZONES(key, encode_zone(result), NOW) == result, "what is stored reads back the same"


@settings(max_examples=DECODER_EXAMPLES)
@given(keys, values | mutated(valid_event))
def test_any_record_of_zone_events_is_an_event_or_a_documented_refusal(key, value):
    result = decode.ZONE_EVENTS(key, value, NOW)
    check(decode.ZONE_EVENTS, result, ZoneEvent)
    if isinstance(result, ZoneEvent):
        assert result.event in ("enter", "exit", "dwell") and result.partition >= 0 and result.offset >= 0
        assert key is None or key == result.driver_id.encode()


@given(st.none() | st.text(max_size=300) | json_values.map(json.dumps))
def test_any_committed_offset_metadata_reads_as_a_position_or_as_unknown(metadata):
    timestamp_ms, read_to = parse_commit_metadata(metadata)
    assert type(timestamp_ms) is int and type(read_to) is int and timestamp_ms >= 0 and read_to >= 0


@given(st.text(alphabet=string.printable + "\u202e\u05d0\u0627\U0001f695<>&", min_size=1, max_size=64))
def test_right_to_left_text_emoji_and_markup_are_valid_ids_shown_as_text(driver_id):
    value = json.dumps({"driver_id": driver_id, "latitude": 1, "longitude": 2, "timestamp": NOW}).encode()
    result = decode.FIXES(None, value, NOW)
    assert isinstance(result, Fix) == (not CONTROL & set(driver_id))


def test_a_fix_a_few_seconds_ahead_is_taken_as_now_and_one_further_ahead_is_refused():
    def at(timestamp: float) -> bytes:
        return json.dumps({"driver_id": "d", "latitude": 1, "longitude": 2, "timestamp": timestamp}).encode()

    assert decode.FIXES(None, at(NOW + MAX_FUTURE_S), NOW).timestamp == NOW
    assert decode.FIXES(None, at(NOW + MAX_FUTURE_S + 0.001), NOW).reason == "future_timestamp"


def test_a_decoder_that_raises_unexpectedly_answers_internal_error_with_the_exception_class():
    def broken(_key, _value, _now):
        raise ZeroDivisionError("a bug")

    result = decode.Decoder("test", broken, ())(None, b"{}", NOW)
    assert result == Refusal(INTERNAL_ERROR, "'ZeroDivisionError: a bug'", "builtins.ZeroDivisionError")


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


bracket_text = st.text(alphabet='[]{}"\\ab', max_size=8)
nested = st.recursive(
    st.integers() | bracket_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(bracket_text, children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=DECODER_EXAMPLES)
@given(nested, st.integers(0, 6))
def test_the_nesting_check_agrees_with_the_parsed_depth_whatever_the_strings_hold(value, limit):
    raw = json.dumps(value).encode()
    assert nests_deeper_than(raw, limit) == (_depth(value) > limit)
