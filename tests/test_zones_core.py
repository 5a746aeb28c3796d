"""Zones as the pure core sees them: what a valid zone is, containment and distance in metres, the table."""

from __future__ import annotations

import json
import math

import pytest

from fleet import decode
from fleet.decode import Refusal
from fleet.geo import destination
from fleet.zones import (
    CIRCLE,
    DEFAULT_HYSTERESIS_M,
    MAX_VERTICES,
    POLYGON,
    InvalidZone,
    Zone,
    ZoneDeleted,
    ZoneEvent,
    ZoneTable,
    encode_event,
    encode_zone,
    parse_zone,
)

LAT, LON = 52.52, 13.405  # Berlin
NOW = 1_800_000_000.0


def square(lat: float = LAT, lon: float = LON, half_m: float = 100.0, **properties) -> dict:
    """A square of 2 * half_m metres a side centred on (lat, lon)."""
    dlat = half_m / 111_195.0
    dlon = dlat / math.cos(math.radians(lat))
    ring = [[lon - dlon, lat - dlat], [lon + dlon, lat - dlat], [lon + dlon, lat + dlat], [lon - dlon, lat + dlat]]
    return polygon([ring + [ring[0]]], **properties)


def polygon(rings: list, **properties) -> dict:
    return {
        "type": "Feature",
        "properties": {"name": "Square", **properties},
        "geometry": {"type": "Polygon", "coordinates": rings},
    }


def circle(lat: float = LAT, lon: float = LON, radius_m: float = 100.0, **properties) -> dict:
    props = {"name": "Circle", "radius_m": radius_m, **properties}
    return {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def reason(feature) -> str:
    with pytest.raises(InvalidZone) as caught:
        parse_zone(feature)
    assert caught.value.detail
    return caught.value.reason


def test_a_polygon_holds_its_inside_and_its_edge_and_measures_the_outside_in_metres():
    zone = parse_zone(square(half_m=100.0))
    assert zone.kind == POLYGON and zone.hysteresis_m == DEFAULT_HYSTERESIS_M and zone.dwell_s is None
    assert zone.contains(LAT, LON) and zone.distance_m(LAT, LON) == 0.0
    edge_lat, edge_lon = destination(LAT, LON, 0.0, 100.0)
    assert zone.contains(edge_lat - 1e-9, edge_lon)
    for bearing in (0.0, 90.0, 180.0, 270.0):
        lat, lon = destination(LAT, LON, bearing, 130.0)
        assert not zone.contains(lat, lon)
        assert zone.distance_m(lat, lon) == pytest.approx(30.0, abs=0.5)


def test_a_circle_is_a_point_with_a_radius_measured_on_the_sphere():
    zone = parse_zone(circle(radius_m=250.0))
    assert zone.kind == CIRCLE
    assert zone.contains(*destination(LAT, LON, 45.0, 249.0))
    assert not zone.contains(*destination(LAT, LON, 45.0, 251.0))
    assert zone.distance_m(*destination(LAT, LON, 200.0, 300.0)) == pytest.approx(50.0, abs=0.1)


def test_the_stored_feature_is_normalised_and_reads_back_to_the_same_zone():
    zone = parse_zone(circle(name="  Airport queue  ", dwell_s=120, extra="dropped"), zone_id="z1")
    assert zone.name == "Airport queue" and zone.feature["id"] == "z1"
    assert zone.feature["properties"] == {
        "name": "Airport queue",
        "hysteresis_m": 20.0,
        "dwell_s": 120.0,
        "radius_m": 100.0,
    }
    assert decode.ZONES(b"z1", encode_zone(zone), NOW) == zone


def test_ids_come_from_the_key_then_the_feature_then_a_fresh_uuid():
    assert parse_zone({**circle(), "id": "mine"}).zone_id == "mine"
    assert parse_zone({**circle(), "id": "mine"}, zone_id="key").zone_id == "key"
    fresh = {parse_zone(circle()).zone_id for _ in range(3)}
    assert len(fresh) == 3 and all(len(z) == 32 for z in fresh)


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ([], "not_a_feature"),
        ({"type": "FeatureCollection"}, "not_a_feature"),
        (polygon([[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]), "bad_geometry"),  # a bow tie crosses itself
        (polygon([[[0, 0], [1, 0], [1, 1], [0, 1]]]), "bad_geometry"),  # not closed
        (polygon([[[0, 0], [1, 0], [0, 0]]]), "bad_geometry"),  # too few positions
        (polygon([[[0, 0], [1, 0], [2, 0], [0, 0]]]), "bad_geometry"),  # no area
        (polygon([[[0, 0], [200, 0], [1, 1], [0, 0]]]), "bad_coordinates"),
        (polygon([[[0, 0], [1, 0], [1, "1"], [0, 0]]]), "bad_coordinates"),
        (polygon([[[-179, 0], [179, 0], [179, 1], [-179, 0]]]), "bad_geometry"),  # across the antimeridian
        ({**circle(), "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}, "bad_geometry"),
        (circle(radius_m=0), "bad_radius"),
        (circle(radius_m=float("nan")), "bad_radius"),
        (circle(radius_m=50_001), "radius_too_large"),
        (circle(name=""), "bad_name"),
        (circle(name="   "), "bad_name"),
        (circle(name="x" * 101), "bad_name"),
        (circle(name="a\u0000b"), "bad_name"),
        (circle(name=7), "bad_name"),
        (circle(dwell_s=-1), "bad_dwell"),
        (circle(dwell_s=math.inf), "bad_dwell"),
        (circle(hysteresis_m=1001), "bad_hysteresis"),
        (circle(hysteresis_m=True), "bad_hysteresis"),
    ],
)
def test_an_invalid_zone_is_refused_with_a_short_reason_and_a_sentence(feature, expected):
    assert reason(feature) == expected


def test_a_polygon_has_at_most_a_thousand_vertices_and_the_explanation_names_the_problem():
    ring = [
        [LON + 0.01 * math.cos(2 * math.pi * i / 1000), LAT + 0.01 * math.sin(2 * math.pi * i / 1000)]
        for i in range(1000)
    ]
    assert parse_zone(polygon([ring + [ring[0]]])).kind == POLYGON
    ring = [
        [LON + 0.01 * math.cos(2 * math.pi * i / 1001), LAT + 0.01 * math.sin(2 * math.pi * i / 1001)]
        for i in range(MAX_VERTICES + 1)
    ]
    assert reason(polygon([ring + [ring[0]]])) == "too_many_vertices"
    with pytest.raises(InvalidZone, match="Self-intersection"):
        parse_zone(polygon([[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]))


def test_a_polygon_with_a_hole_does_not_hold_the_hole():
    outer = [[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1], [13.0, 52.0]]
    hole = [[13.04, 52.04], [13.06, 52.04], [13.06, 52.06], [13.04, 52.06], [13.04, 52.04]]
    zone = parse_zone(polygon([outer, hole]))
    assert zone.contains(52.02, 13.02) and not zone.contains(52.05, 13.05)
    # nearest edge of the hole: 0.01 degree of longitude to the east or west
    assert zone.distance_m(52.05, 13.05) == pytest.approx(0.01 * 111_195 * math.cos(math.radians(52.05)), rel=0.01)


def test_the_table_finds_every_zone_holding_a_point_and_only_those():
    table = ZoneTable()
    table.put(parse_zone(square(half_m=500.0), zone_id="big"))
    table.put(parse_zone(square(half_m=50.0), zone_id="small"))
    table.put(parse_zone(circle(radius_m=200.0), zone_id="round"))
    table.put(parse_zone(square(lat=LAT + 1), zone_id="far"))
    assert {z.zone_id for z in table.containing(LAT, LON)} == {"big", "small", "round"}
    lat, lon = destination(LAT, LON, 90.0, 300.0)
    assert {z.zone_id for z in table.containing(lat, lon)} == {"big"}
    # a circle's bounding box holds its corner; the circle does not
    assert [z.zone_id for z in table.containing(*destination(LAT, LON, 45.0, 250.0))] == ["big"]
    many = table.containing_many([LAT, lat, 0.0], [LON, lon, 0.0])
    assert [sorted(z.zone_id for z in found) for found in many] == [["big", "round", "small"], ["big"], []]
    assert table.remove("big").zone_id == "big" and table.remove("big") is None
    assert {z.zone_id for z in table.containing(lat, lon)} == set()
    table.put(parse_zone(square(half_m=1000.0, name="Renamed"), zone_id="small"))
    assert [z.name for z in table.containing(lat, lon)] == ["Renamed"]
    assert len(table) == 3 and {z.zone_id for z in table} == {"small", "round", "far"}


def test_the_table_is_bounded():
    table = ZoneTable(max_zones=2)
    table.put(parse_zone(circle(), zone_id="a"))
    table.put(parse_zone(circle(), zone_id="b"))
    table.put(parse_zone(circle(radius_m=5), zone_id="b"))  # a replacement is no new zone
    with pytest.raises(InvalidZone) as caught:
        table.put(parse_zone(circle(), zone_id="c"))
    assert caught.value.reason == "too_many_zones" and len(table) == 2


def test_zone_records_decode_to_a_zone_a_deletion_or_a_refusal():
    value = json.dumps(circle()).encode()
    assert isinstance(decode.ZONES(b"z", value, NOW), Zone)
    assert decode.ZONES(b"z", None, NOW) == ZoneDeleted("z")
    assert decode.ZONES(None, value, NOW) == Refusal("missing_key", "a zones record needs the zone id as its key")
    assert decode.ZONES(b"\xff", value, NOW).reason == "bad_zone_id"
    assert decode.ZONES(b"z", b"{", NOW).reason == "not_json"
    assert decode.ZONES(b"z", json.dumps(circle(radius_m=1e9)).encode(), NOW).reason == "radius_too_large"


def test_an_event_is_the_documented_json_and_decodes_back():
    event = ZoneEvent("d1", "z1", "Airport <queue>", "enter", 52.5, 13.4, NOW - 1, 3, 42)
    assert event.to_json() == {
        "driver_id": "d1",
        "zone_id": "z1",
        "zone_name": "Airport <queue>",
        "event": "enter",
        "latitude": 52.5,
        "longitude": 13.4,
        "timestamp": NOW - 1,
        "source": {"partition": 3, "offset": 42},
    }
    assert decode.ZONE_EVENTS(b"d1", encode_event(event), NOW) == event
    assert decode.ZONE_EVENTS(b"d2", encode_event(event), NOW).reason == "key_mismatch"
    bad = {**event.to_json(), "event": "teleport"}
    assert decode.ZONE_EVENTS(None, json.dumps(bad).encode(), NOW).reason == "bad_event"
