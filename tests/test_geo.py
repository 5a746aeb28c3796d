"""Geometry used by the simulator, the dashboard and the matcher."""

import pytest

from fleet.geo import AREAS, BBox, bearing_deg, destination, haversine_m


def test_one_degree_of_latitude_is_about_111_km():
    assert haversine_m(40.0, -74.0, 41.0, -74.0) == pytest.approx(111_195, rel=1e-3)


def test_destination_then_distance_and_bearing_agree():
    lat, lon = destination(40.75, -73.98, 60.0, 1500.0)
    assert haversine_m(40.75, -73.98, lat, lon) == pytest.approx(1500.0, rel=1e-6)
    assert bearing_deg(40.75, -73.98, lat, lon) == pytest.approx(60.0, abs=1e-3)


def test_destination_wraps_the_antimeridian():
    lat, lon = destination(0.0, 179.999, 90.0, 1000.0)
    assert -180.0 <= lon < -179.99


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("41,-74,40,-73", "min_lat 41.0 is not below max_lat 40.0"),
        ("40,-73,41,-74", "min_lon -73.0 is not below max_lon -74.0"),
        ("91,-74,92,-73", "min_lat 91.0 is outside"),
        ("1,2,3", "expected MIN_LAT,MIN_LON,MAX_LAT,MAX_LON"),
        ("a,b,c,d", "expected four numbers"),
    ],
)
def test_bad_bboxes_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        BBox.parse(text)


def test_named_areas_are_valid_and_contain_their_centre():
    for box in AREAS.values():
        assert box.contains(*box.center)
