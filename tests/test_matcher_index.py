"""The matcher's spatial grid: the nearest point within a radius, exactly as a full scan finds it."""

import random

import pytest

from fleet.geo import destination, haversine_m
from matcher.index import GridIndex

TIMES_SQUARE = (40.758, -73.9855)


def brute_force(points: dict[str, tuple[float, float]], lat: float, lon: float, max_m: float):
    """Every point's distance by the shared haversine; the smallest (distance, id) within the radius."""
    inside = [(haversine_m(lat, lon, *p), i) for i, p in points.items() if haversine_m(lat, lon, *p) <= max_m]
    return min(inside) if inside else None


def index_of(points: dict[str, tuple[float, float]], cell_deg: float = 0.0025) -> GridIndex:
    index = GridIndex(cell_deg)
    for item_id, (lat, lon) in points.items():
        index.put(item_id, lat, lon)
    return index


def test_the_nearest_of_several_points_wins_with_its_great_circle_distance():
    points = {name: destination(*TIMES_SQUARE, bearing, metres) for name, bearing, metres in [
        ("far", 0, 900), ("near", 135, 250), ("middle", 270, 400),
    ]}  # fmt: skip
    found = index_of(points).nearest(*TIMES_SQUARE, 5000)
    assert found[0] == "near"
    assert found[1] == pytest.approx(250, abs=0.01)


def test_a_point_just_outside_the_radius_is_not_found_and_one_just_inside_is():
    index = index_of({"outside": destination(*TIMES_SQUARE, 60, 5000.5)})
    assert index.nearest(*TIMES_SQUARE, 5000) is None
    index.put("inside", *destination(*TIMES_SQUARE, 240, 4999.5))
    assert index.nearest(*TIMES_SQUARE, 5000)[0] == "inside"


def test_equal_distances_go_to_the_smallest_id_whatever_the_order_of_insertion():
    spot = destination(*TIMES_SQUARE, 45, 300)
    for order in (["b", "a", "c"], ["c", "b", "a"], ["a", "c", "b"]):
        index = GridIndex()
        for item_id in order:
            index.put(item_id, *spot)
        assert index.nearest(*TIMES_SQUARE, 5000)[0] == "a"


def test_a_point_moved_or_removed_is_found_where_it_is_now():
    index = index_of({"a": destination(*TIMES_SQUARE, 0, 100), "b": destination(*TIMES_SQUARE, 0, 2000)})
    index.put("a", *destination(*TIMES_SQUARE, 0, 3000))  # moves to another cell
    assert index.nearest(*TIMES_SQUARE, 5000)[0] == "b"
    assert index.remove("b") and not index.remove("b")
    assert index.nearest(*TIMES_SQUARE, 5000)[0] == "a"
    assert len(index) == 1 and "a" in index and "b" not in index


def test_an_empty_index_finds_nothing():
    assert GridIndex().nearest(*TIMES_SQUARE, 5000) is None


@pytest.mark.parametrize(
    "center, cell_deg",
    [
        (TIMES_SQUARE, 0.0025),
        (TIMES_SQUARE, 0.01),
        ((69.65, 18.96), 0.0025),  # Tromsø: meridians close together
        ((-33.87, 151.21), 0.005),  # Sydney: southern and eastern hemispheres
        ((0.0, 179.99), 0.0025),  # across the antimeridian
    ],
)
def test_the_grid_finds_exactly_what_a_full_scan_finds(center, cell_deg):
    rnd = random.Random(f"{center}{cell_deg}")
    points = {}
    for n in range(400):
        lat, lon = destination(*center, rnd.uniform(0, 360), rnd.uniform(0, 8000))
        points[f"d{n:03d}"] = (lat, lon)
    index = index_of(points, cell_deg)
    for _ in range(300):
        lat, lon = destination(*center, rnd.uniform(0, 360), rnd.uniform(0, 9000))
        radius = rnd.choice([300, 1000, 5000])
        expected = brute_force(points, lat, lon, radius)
        found = index.nearest(lat, lon, radius)
        if expected is None:
            assert found is None
        else:
            assert found[0] == expected[1]
            assert found[1] == pytest.approx(expected[0], abs=1e-6)


def test_a_cell_size_that_does_not_divide_360_degrees_is_refused():
    with pytest.raises(ValueError, match="divide 360"):
        GridIndex(0.007)
    with pytest.raises(ValueError, match="divide 360"):
        GridIndex(0)
