"""Supply and demand per H3 cell: available drivers and waiting riders, counted where they are.

Pure: the caller hands over positions (the dashboard's available, fresh drivers and its waiting
riders) and gets the non-empty cells of one resolution with both counts and their ratio. H3 (Uber's
hexagonal grid, h3-py 4.x) gives every point one cell per resolution, so counting is one
``latlng_to_cell`` per point and a dict: ~1 µs a point, 30,000 drivers in ~30 ms on this machine
(bench/density.py). A cell's centre and, when asked, its boundary come from H3 too; boundaries are
cached, since the cells a fleet covers change little from one second to the next.

At most ``max_cells`` cells are returned (the busiest, by drivers plus riders), with ``truncated``
set when some were left out: one request cannot cost an unbounded answer.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h3  # type: ignore[import-untyped]  # h3-py 4 ships no type information

RESOLUTIONS = (7, 8, 9)
DEFAULT_RESOLUTION = 8
MAX_CELLS = 20_000
COORDINATE_DECIMALS = 6
# Distinct cells whose boundary is kept: a whole city at resolution 9 is a few tens of thousands.
BOUNDARY_CACHE = 65_536
KM_PER_DEGREE = 111.2  # of latitude

Point = tuple[float, float]  # (latitude, longitude)
# (west, south, east, north) in degrees: GeoJSON's bbox order and Leaflet's LatLngBounds.toBBoxString().
BBox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Cell:
    """One H3 cell with the drivers available and the riders waiting in it."""

    cell: str
    available: int
    waiting: int

    @property
    def ratio(self) -> float | None:
        """Available drivers per waiting rider; None when nobody waits (supply without demand)."""
        return round(self.available / self.waiting, 3) if self.waiting else None

    def to_json(self, boundary: bool = False) -> dict[str, Any]:
        lat, lon = h3.cell_to_latlng(self.cell)
        body: dict[str, Any] = {
            "cell": self.cell,
            "lat": round(lat, COORDINATE_DECIMALS),
            "lon": round(lon, COORDINATE_DECIMALS),
            "available": self.available,
            "waiting": self.waiting,
            "ratio": self.ratio,
        }
        if boundary:
            body["boundary"] = [list(vertex) for vertex in cell_boundary(self.cell)]
        return body


@dataclass(frozen=True, slots=True)
class Density:
    """The non-empty cells of one resolution (busiest first) and whether some were left out."""

    resolution: int
    cells: tuple[Cell, ...]
    truncated: bool

    def to_json(self, updated_at: float, boundary: bool = False) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "cells": [cell.to_json(boundary) for cell in self.cells],
            "truncated": self.truncated,
            "updated_at": updated_at,
        }

    def to_json_text(self, updated_at: float, boundary: bool = False, bbox: BBox | None = None) -> str:
        """:meth:`to_json` encoded, the same JSON, ~10 times faster: each cell's centre and boundary are
        encoded once and cached (json.dumps of 6,500 cells with their boundaries took 250 ms; this ~25 ms).
        Only H3 indexes (hexadecimal) and numbers: nothing in it needs escaping. With ``bbox``, only the
        cells that can show in it (their centre within one cell of it)."""
        if bbox is None:
            shown: Iterable[Cell] = self.cells
        else:
            margin_lat = 2 * float(h3.average_hexagon_edge_length(self.resolution, unit="km")) / KM_PER_DEGREE
            shown = [c for c in self.cells if _near(c.cell, bbox, margin_lat)]
        cells = ",".join(
            f'{{{_cell_text(c.cell, boundary)},"available":{c.available},"waiting":{c.waiting},'
            f'"ratio":{"null" if c.ratio is None else repr(c.ratio)}}}'
            for c in shown
        )
        truncated = "true" if self.truncated else "false"
        return (
            f'{{"resolution":{self.resolution},"cells":[{cells}],"truncated":{truncated},'
            f'"updated_at":{json.dumps(updated_at)}}}'
        )


def density(
    available: Iterable[Point], waiting: Iterable[Point], resolution: int, max_cells: int = MAX_CELLS
) -> Density:
    """Count ``available`` drivers and ``waiting`` riders per cell of ``resolution``; the busiest ``max_cells``."""
    if resolution not in RESOLUTIONS:
        raise ValueError("resolution must be 7, 8 or 9")
    if max_cells < 1:
        raise ValueError("max_cells must be at least 1")
    to_cell = h3.latlng_to_cell
    supply: dict[str, int] = {}
    for lat, lon in available:
        cell = to_cell(lat, lon, resolution)
        supply[cell] = supply.get(cell, 0) + 1
    demand: dict[str, int] = {}
    for lat, lon in waiting:
        cell = to_cell(lat, lon, resolution)
        demand[cell] = demand.get(cell, 0) + 1
    cells = [Cell(c, supply.get(c, 0), demand.get(c, 0)) for c in supply.keys() | demand.keys()]
    truncated = len(cells) > max_cells
    busiest = heapq.nlargest(max_cells, cells, key=lambda c: (c.available + c.waiting, c.waiting, c.cell))
    return Density(resolution, tuple(busiest), truncated)


@functools.lru_cache(maxsize=BOUNDARY_CACHE)
def cell_boundary(cell: str) -> tuple[tuple[float, float], ...]:
    """The cell's corners as (lat, lon), rounded like every coordinate the dashboard sends."""
    return tuple(
        (round(lat, COORDINATE_DECIMALS), round(lon, COORDINATE_DECIMALS)) for lat, lon in h3.cell_to_boundary(cell)
    )


@functools.lru_cache(maxsize=BOUNDARY_CACHE)
def _cell_text(cell: str, boundary: bool) -> str:
    """The constant members of a cell's JSON object: its index, centre and (when asked) boundary."""
    if not all(c in "0123456789abcdef" for c in cell):
        raise ValueError(f"{cell!r} is not an H3 index")
    lat, lon = h3.cell_to_latlng(cell)
    text = f'"cell":"{cell}","lat":{round(lat, COORDINATE_DECIMALS)!r},"lon":{round(lon, COORDINATE_DECIMALS)!r}'
    if boundary:
        text += ',"boundary":' + json.dumps([list(v) for v in cell_boundary(cell)], separators=(",", ":"))
    return text


def parse_resolution(raw: str | None) -> int:
    """``?resolution=``: 7, 8 or 9 (unset: 8); ValueError saying what to send otherwise."""
    if raw is None:
        return DEFAULT_RESOLUTION
    if raw.isascii() and raw.isdigit() and len(raw) == 1 and int(raw) in RESOLUTIONS:
        return int(raw)
    raise ValueError(f"resolution must be 7, 8 or 9 (default {DEFAULT_RESOLUTION})")


def parse_bbox(raw: str | None) -> BBox | None:
    """``?bbox=west,south,east,north`` in degrees (what Leaflet's ``getBounds().toBBoxString()`` gives), clamped
    to the world, None when unset (every cell); ValueError saying what to send otherwise."""
    if raw is None:
        return None
    parts = raw.split(",")
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise ValueError("bbox must be four numbers: west,south,east,north in degrees") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)) or west > east or south > north:
        raise ValueError("bbox must be four finite numbers, west <= east and south <= north")
    # A map zoomed out shows more than the world: what lies past its edges holds no cell.
    return max(-180.0, west), max(-90.0, south), min(180.0, east), min(90.0, north)


@functools.lru_cache(maxsize=BOUNDARY_CACHE)
def _centre(cell: str) -> tuple[float, float]:
    lat, lon = h3.cell_to_latlng(cell)
    return float(lat), float(lon)


def _near(cell: str, bbox: BBox, margin_lat: float) -> bool:
    """Whether ``cell`` can overlap ``bbox``: its centre lies within ``margin_lat`` degrees of latitude (twice the
    cell's mean edge length: a hexagon's corners are one edge from its centre), and as many metres east or west."""
    lat, lon = _centre(cell)
    west, south, east, north = bbox
    margin_lon = margin_lat / max(0.01, math.cos(math.radians(lat)))
    return south - margin_lat <= lat <= north + margin_lat and west - margin_lon <= lon <= east + margin_lon


def parse_flag(name: str, raw: str | None) -> bool:
    """``?boundary=``: 1 or 0 (unset: 0); ValueError otherwise."""
    if raw is None or raw == "0":
        return False
    if raw == "1":
        return True
    raise ValueError(f"{name} must be 1 or 0 (default 0)")
