"""The ride-requests and ride-matches messages: what is valid, what is refused and why, their keys."""

import json

import pytest

from fleet import rides
from fleet.rides import (
    MATCHED,
    NO_DRIVER,
    RideMatch,
    RideRequest,
    area_of,
    encode_match,
    encode_request,
    match_key,
    parse_match,
    parse_request,
    request_key,
)
from fleet.schema import InvalidMessage

NOW = 1_800_000_000.0
GOOD = {"request_id": "req-1", "rider_id": "rider-7", "latitude": 40.75, "longitude": -73.98, "timestamp": NOW}


def value(**changes) -> bytes:
    message = {**GOOD, **changes}
    return json.dumps({k: v for k, v in message.items() if v is not ...}).encode()


def test_a_valid_request_is_read_with_integer_ids_as_strings():
    request = parse_request(value(request_id=12, rider_id=34, extra="ignored"), NOW)
    assert request == RideRequest("12", "34", 40.75, -73.98, NOW)
    assert parse_request(encode_request(request), NOW) == request


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "not_json"),
        (None, "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"pad": "' + b"x" * 20000 + b'"}', "too_large"),
        (value(rider_id=...), "missing_field"),
        (value(request_id=""), rides.BAD_REQUEST_ID),
        (value(request_id="x" * 65), rides.BAD_REQUEST_ID),
        (value(rider_id=["a"]), rides.BAD_RIDER_ID),
        (value(latitude=91), "bad_latitude"),
        (value(longitude="east"), "bad_longitude"),
        (value(timestamp=-1), "bad_timestamp"),
        (value(timestamp=NOW * 1000), "future_timestamp"),
    ],
)
def test_a_malformed_request_is_refused_with_its_reason(raw, reason):
    with pytest.raises(InvalidMessage) as refused:
        parse_request(raw, NOW)
    assert refused.value.reason == reason


def matched() -> RideMatch:
    return RideMatch(
        request_id="req-1",
        rider_id="rider-7",
        outcome=MATCHED,
        timestamp=NOW + 1.5,
        requested_at=NOW,
        latitude=40.75,
        longitude=-73.98,
        driver_id="drv-00042",
        distance_m=312.34,
        eta_s=45,
        driver_latitude=40.7528,
        driver_longitude=-73.98,
    )


def test_a_match_goes_through_its_encoding_unchanged_and_is_keyed_by_request_id():
    match = matched()
    decoded = parse_match(encode_match(match), match.timestamp, key=match_key(match.request_id))
    assert decoded.driver_id == "drv-00042" and decoded.eta_s == 45
    assert decoded.distance_m == pytest.approx(312.3)
    assert decoded.time_to_match_s == pytest.approx(1.5)
    assert match_key("req-1") == b"req-1"


def test_a_no_driver_answer_carries_no_driver_fields():
    answer = RideMatch("req-2", "rider-8", NO_DRIVER, NOW + 30, NOW, 40.75, -73.98)
    message = json.loads(encode_match(answer))
    assert message["outcome"] == "no_driver"
    assert not {"driver_id", "distance_m", "eta_s"} & set(message)
    assert parse_match(encode_match(answer), NOW + 30) == answer


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"outcome": "maybe"}, rides.BAD_OUTCOME),
        ({"eta_s": 4.5}, rides.BAD_ETA),
        ({"distance_m": -1}, rides.BAD_DISTANCE),
        ({"driver_id": None}, rides.BAD_DRIVER_ID),
    ],
)
def test_a_malformed_match_is_refused_with_its_reason(change, reason):
    message = {**matched().to_message(), **change}
    with pytest.raises(InvalidMessage) as refused:
        parse_match(json.dumps(message).encode(), NOW + 2)
    assert refused.value.reason == reason


def test_a_matched_answer_without_its_driver_is_refused():
    message = matched().to_message()
    del message["driver_id"]
    with pytest.raises(InvalidMessage, match="missing_field"):
        parse_match(json.dumps(message).encode(), NOW + 2)


def test_requests_in_a_named_city_share_one_key_and_others_go_by_one_degree_tile():
    assert area_of(40.70, -74.01) == area_of(40.80, -73.93) == "nyc"  # across the -74 meridian
    assert area_of(51.50, -0.10) == area_of(51.50, 0.10) == "london"  # across Greenwich
    assert area_of(48.85, 2.35) == "tile:48:2"
    assert area_of(-33.87, 151.21) == "tile:-34:151"
    assert request_key(40.75, -73.98) == b"nyc"
