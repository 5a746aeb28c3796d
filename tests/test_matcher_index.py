"""The matcher's spatial grid: the nearest point within a radius, exactly as a full scan finds it."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.geo import destination, haversine_m
from matcher.index import DEFAULT_CELL_DEG, LIST_COST, GridIndex, distance_from_term, haversine_term

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
    points = {
        name: destination(*TIMES_SQUARE, bearing, metres)
        for name, bearing, metres in [
            ("far", 0, 900),
            ("near", 135, 250),
            ("middle", 270, 400),
        ]
    }
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


# ---- any point on Earth: poles, the antimeridian, radii up to the whole Earth


def brute_force_terms(points: dict[str, tuple[float, float]], lat: float, lon: float, max_m: float):
    """Every point's haversine term computed as the index computes it: the nearest (id, distance), exactly."""
    phi0, lam0 = math.radians(lat), math.radians(lon)
    cos0 = math.cos(phi0)
    best_a, best_id = haversine_term(max_m), None
    for item_id, (p_lat, p_lon) in points.items():
        phi, lam = math.radians(p_lat), math.radians(p_lon)
        a = math.sin((phi - phi0) / 2) ** 2 + cos0 * math.cos(phi) * math.sin((lam - lam0) / 2) ** 2
        if a < best_a or (a == best_a and (best_id is None or item_id < best_id)):
            best_a, best_id = a, item_id
    return None if best_id is None else (best_id, distance_from_term(best_a))


EDGE_LATITUDES = [90.0, -90.0, 89.9999, -89.9999, 89.99, -89.99, 0.0]
EDGE_LONGITUDES = [180.0, -180.0, 179.9999, -179.9999, 0.0]
latitudes = st.one_of(st.sampled_from(EDGE_LATITUDES), st.floats(-90, 90))
longitudes = st.one_of(st.sampled_from(EDGE_LONGITUDES), st.floats(-180, 180))
radii = st.one_of(st.sampled_from([1.0, 5000.0, 20_000_000.0]), st.floats(1.0, 20_000_000.0))


@st.composite
def scenes(draw):
    """A query point and radius, and items: some anywhere, some within a few radii of the query
    (so that there is something to find), some on the edge of the radius, several at exactly the
    same spot (ties)."""
    lat, lon, radius = draw(latitudes), draw(longitudes), draw(radii)
    near = st.builds(
        lambda bearing, share: destination(lat, lon, bearing, share * radius),
        st.one_of(st.sampled_from([0.0, 90.0, 180.0, 270.0]), st.floats(0, 360)),  # due north crosses a pole
        st.one_of(st.sampled_from([0.999999, 1.0, 1.000001]), st.floats(0, 3)),  # on the edge of the radius
    )
    spots = draw(st.lists(st.one_of(st.tuples(latitudes, longitudes), near), max_size=30))
    repeated = draw(st.lists(st.sampled_from(spots), max_size=5)) if spots else []
    points = {f"d{n:02d}": spot for n, spot in enumerate(spots + repeated)}
    order = draw(st.permutations(list(points)))
    cell_deg = draw(st.sampled_from([DEFAULT_CELL_DEG, 0.0025, 1.0]))
    return (lat, lon, radius), {item_id: points[item_id] for item_id in order}, cell_deg


@given(scenes())
@settings(max_examples=400)
def test_for_any_point_on_earth_and_any_radius_the_grid_finds_exactly_what_a_full_scan_finds(scene):
    (lat, lon, radius), points, cell_deg = scene
    index = index_of(points, cell_deg)
    assert index.nearest(lat, lon, radius) == brute_force_terms(points, lat, lon, radius)


@given(scenes(), st.data())
@settings(max_examples=150)
def test_points_moved_and_removed_anywhere_are_found_where_they_are_now(scene, data):
    (lat, lon, radius), points, cell_deg = scene
    index = index_of(points, cell_deg)
    for item_id in data.draw(st.lists(st.sampled_from(sorted(points)), max_size=10)) if points else []:
        if data.draw(st.booleans()):
            points[item_id] = (data.draw(latitudes), data.draw(longitudes))
            index.put(item_id, *points[item_id])
        elif item_id in index:
            index.remove(item_id)
            del points[item_id]
    assert index.nearest(lat, lon, radius) == brute_force_terms(points, lat, lon, radius)


def city_and_pole(drivers_in_city: int, drivers_at_pole: int) -> tuple[GridIndex, dict[str, tuple[float, float]]]:
    rnd = random.Random(drivers_in_city + drivers_at_pole)
    points = {
        f"c{n:05d}": destination(*TIMES_SQUARE, rnd.uniform(0, 360), rnd.uniform(0, 20_000))
        for n in range(drivers_in_city)
    }
    points |= {
        f"p{n:03d}": destination(90.0, 0.0, rnd.uniform(0, 360), rnd.uniform(0, 8000)) for n in range(drivers_at_pole)
    }
    return index_of(points, DEFAULT_CELL_DEG), points


# A search inspects rings 0 and 1 (nine cells), then at most LIST_COST ring cells per row of its
# window (cells are 556 m tall: about 20 rows for 5 km) before it lists the occupied cells of
# those rows, then at most LIST_COST per cell listed, and the listed cells themselves.
ROWS_IN_5_KM = 2 * 5000 / 556 + 2


@pytest.mark.parametrize("lat, lon", [(90.0, 0.0), (-90.0, 0.0), (89.9999, 180.0), (90.0, -180.0)])
def test_a_query_at_a_pole_inspects_a_hundred_cells_at_most_however_many_drivers_a_city_holds(lat, lon):
    index, _ = city_and_pole(5000, 0)
    assert index.nearest(lat, lon, 5000) is None
    assert index.cells_inspected <= 9 + LIST_COST * ROWS_IN_5_KM < 100  # the old ring search: 36,000 rings


def test_a_query_at_a_pole_with_drivers_near_it_inspects_a_few_times_their_cells_and_finds_the_nearest():
    index, points = city_and_pole(5000, 300)
    pole_cells = len({index._where[item_id] for item_id in points if item_id.startswith("p")})
    for lat in (90.0, 89.9999, 89.97):
        assert index.nearest(lat, 180.0, 5000) == brute_force_terms(points, lat, 180.0, 5000)
        assert index.cells_inspected <= 9 + (LIST_COST + 1) * max(pole_cells, ROWS_IN_5_KM)


@pytest.mark.parametrize("lon", [180.0, -180.0, 179.999, -179.999])
def test_a_query_on_the_antimeridian_inspects_no_more_than_its_window_and_finds_drivers_on_both_sides(lon):
    points = {"east": destination(0.0, 180.0, 90, 3000), "west": destination(0.0, 180.0, 270, 2000)}
    index = index_of(points, DEFAULT_CELL_DEG)
    assert index.nearest(0.0, lon, 2500)[0] == "west"
    assert index.nearest(0.0, lon, 1500) is None
    window = (2 * 1500 / 556 + 2) ** 2  # 1.5 km each way in cells of 556 m, plus the partial ones
    assert index.cells_inspected <= window


def test_a_search_as_wide_as_the_earth_inspects_a_few_times_the_occupied_cells_at_most():
    index, points = city_and_pole(3000, 100)
    rnd = random.Random(1)
    for _ in range(20):
        lat, lon = rnd.uniform(-90, 90), rnd.uniform(-180, 180)
        assert index.nearest(lat, lon, 20_000_000) == brute_force_terms(points, lat, lon, 20_000_000)
        assert index.cells_inspected <= 9 + (LIST_COST + 1) * len(index._cells)


@pytest.mark.parametrize("lon", [0.0, 45.3, 179.9999, 180.0, -180.0, -0.0025])
def test_a_driver_across_the_pole_on_the_opposite_meridian_is_found(lon):
    across = destination(89.999, lon, 0, 222)  # over the pole: longitude lon ± 180
    index = index_of({"across": across, "far": (89.99, lon)}, DEFAULT_CELL_DEG)
    assert index.nearest(89.999, lon, 500) == brute_force_terms({"across": across}, 89.999, lon, 500)


@given(scenes())
@settings(max_examples=150)
def test_no_cell_is_inspected_twice_by_one_search(scene):
    (lat, lon, radius), points, cell_deg = scene
    index = index_of(points, cell_deg)
    seen: list[tuple[int, int]] = []
    scan = index._scan
    index._scan = lambda keys, *rest: (seen.extend(keys), scan(keys, *rest))[1]
    index.nearest(lat, lon, radius)
    assert len(seen) == len(set(seen)) <= index.cells_inspected
