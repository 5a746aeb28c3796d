"""Supply and demand per H3 cell (fleet/density.py): pure, no broker."""

from __future__ import annotations

import json

import h3
import pytest

from fleet.density import DEFAULT_RESOLUTION, density, parse_bbox, parse_flag, parse_resolution

TIMES_SQUARE = (40.758, -73.9855)
JFK = (40.6413, -73.7781)


def test_drivers_and_riders_in_the_same_cell_are_counted_together_with_their_ratio():
    result = density([TIMES_SQUARE, TIMES_SQUARE, TIMES_SQUARE], [TIMES_SQUARE, TIMES_SQUARE], 8)
    (cell,) = result.cells
    assert cell.cell == h3.latlng_to_cell(*TIMES_SQUARE, 8)
    assert (cell.available, cell.waiting, cell.ratio) == (3, 2, 1.5)
    assert not result.truncated


def test_only_non_empty_cells_are_listed_and_a_cell_nobody_waits_in_has_no_ratio():
    result = density([TIMES_SQUARE], [JFK, JFK], 7)
    by_cell = {c.cell: c for c in result.cells}
    assert set(by_cell) == {h3.latlng_to_cell(*TIMES_SQUARE, 7), h3.latlng_to_cell(*JFK, 7)}
    drivers_only = by_cell[h3.latlng_to_cell(*TIMES_SQUARE, 7)]
    riders_only = by_cell[h3.latlng_to_cell(*JFK, 7)]
    assert (drivers_only.available, drivers_only.waiting, drivers_only.ratio) == (1, 0, None)
    assert (riders_only.available, riders_only.waiting, riders_only.ratio) == (0, 2, 0.0)


def test_an_empty_fleet_has_no_cells():
    assert density([], [], 9).cells == ()


def test_a_finer_resolution_splits_a_crowd_into_more_cells():
    crowd = [(40.70 + i * 0.002, -74.0 + i * 0.002) for i in range(50)]
    counts = [len(density(crowd, [], r).cells) for r in (7, 8, 9)]
    assert counts[0] < counts[1] < counts[2]
    assert all(sum(c.available for c in density(crowd, [], r).cells) == 50 for r in (7, 8, 9))


def test_past_the_bound_only_the_busiest_cells_are_kept_and_the_answer_says_it_was_truncated():
    spread = [(40.5 + i * 0.01, -74.0) for i in range(30)]  # one driver per cell
    busy = [JFK] * 5 + [TIMES_SQUARE] * 3
    result = density(spread + busy, [TIMES_SQUARE] * 4, 9, max_cells=2)
    assert result.truncated
    assert [(c.available, c.waiting) for c in result.cells] == [(3, 4), (5, 0)]


def test_the_json_has_each_cells_centre_and_on_request_its_boundary():
    result = density([TIMES_SQUARE], [], 8)
    body = result.to_json(updated_at=1.5)
    assert body["resolution"] == 8 and body["truncated"] is False and body["updated_at"] == 1.5
    (cell,) = body["cells"]
    assert abs(cell["lat"] - TIMES_SQUARE[0]) < 0.01 and abs(cell["lon"] - TIMES_SQUARE[1]) < 0.01
    assert "boundary" not in cell
    (with_boundary,) = result.to_json(1.5, boundary=True)["cells"]
    assert len(with_boundary["boundary"]) == 6  # a hexagon (H3's 12 pentagons are all at sea)
    assert all(
        abs(lat - cell["lat"]) < 0.01 and abs(lon - cell["lon"]) < 0.01 for lat, lon in with_boundary["boundary"]
    )


def test_only_resolutions_7_8_and_9_are_served():
    with pytest.raises(ValueError, match="7, 8 or 9"):
        density([TIMES_SQUARE], [], 10)
    assert parse_resolution(None) == DEFAULT_RESOLUTION == 8
    assert [parse_resolution(r) for r in ("7", "8", "9")] == [7, 8, 9]
    for bad in ("6", "10", "08", "", "8.0", " 8", "٨", "nine"):
        with pytest.raises(ValueError, match="resolution must be 7, 8 or 9"):
            parse_resolution(bad)


def test_boundary_is_1_or_0():
    assert parse_flag("boundary", None) is False
    assert parse_flag("boundary", "0") is False
    assert parse_flag("boundary", "1") is True
    for bad in ("true", "yes", "2", ""):
        with pytest.raises(ValueError, match="boundary must be 1 or 0"):
            parse_flag("boundary", bad)


def test_the_fast_encoding_is_the_same_json():
    crowd = [(40.70 + i * 0.003, -74.0 + i * 0.002) for i in range(40)]
    result = density(crowd, crowd[::3], 9)
    for boundary in (False, True):
        assert json.loads(result.to_json_text(1.25, boundary)) == result.to_json(1.25, boundary)
    assert json.loads(density([], [], 8).to_json_text(2.0)) == {
        "resolution": 8,
        "cells": [],
        "truncated": False,
        "updated_at": 2.0,
    }


def test_a_bbox_keeps_the_cells_of_the_view_and_those_one_cell_beyond_it():
    result = density([TIMES_SQUARE, JFK], [], 8)
    midtown = (-74.0, 40.75, -73.97, 40.77)  # west, south, east, north: Times Square, not JFK
    shown = json.loads(result.to_json_text(1.0, bbox=midtown))["cells"]
    assert [c["cell"] for c in shown] == [h3.latlng_to_cell(*TIMES_SQUARE, 8)]
    just_west_of_times_square = (-73.99, 40.75, -73.987, 40.77)  # the cell's centre 400 m east: still drawn
    assert len(json.loads(result.to_json_text(1.0, bbox=just_west_of_times_square))["cells"]) == 1
    far_away = (2.2, 48.8, 2.4, 48.9)
    assert json.loads(result.to_json_text(1.0, bbox=far_away))["cells"] == []


def test_a_bbox_is_four_numbers_west_south_east_north_clamped_to_the_world():
    assert parse_bbox(None) is None
    assert parse_bbox("-74.1,40.6,-73.7,40.9") == (-74.1, 40.6, -73.7, 40.9)
    assert parse_bbox("-400,-95,400,95") == (-180.0, -90.0, 180.0, 90.0), "a map zoomed out past the world"
    for bad in ("", "1,2,3", "1,2,3,4,5", "a,b,c,d", "nan,0,1,1", "0,0,inf,1", "2,0,1,1", "0,2,1,1"):
        with pytest.raises(ValueError, match="bbox must be"):
            parse_bbox(bad)
