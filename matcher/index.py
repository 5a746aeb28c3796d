"""A spatial index of points on the sphere: a latitude/longitude grid searched ring by ring.

Cells are ``cell_deg`` degrees on each side. A query scans the cell of the point, then the
ring of cells around it, then the next ring, and stops as soon as no cell further out can
hold a point nearer than the best one found, or all of them are beyond the search radius.
That stopping rule is a proven lower bound on the great-circle distance (see
:meth:`GridIndex._ring_bound`), so the answer is exactly the brute-force answer, only faster:
``bench/matcher.py`` checks both on every query it times, and compares the grid with h3.

Distances are compared as the haversine term ``a = sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)``,
which grows with distance, so a scan needs no square root or arcsine per candidate.
"""

from __future__ import annotations

import math

from fleet.geo import EARTH_RADIUS_M

# About 560 m north-south (420 m east-west in New York). With 10,000 free drivers in a city a
# cell holds a few dozen and the nearest is usually found in the first cell alone; with no
# driver in reach, a 5 km search is about 625 cells. Sizes from 0.001 to 0.01 degrees and h3
# are compared in docs/benchmarks.md ("Matcher").
DEFAULT_CELL_DEG = 0.005


def haversine_term(distance_m: float) -> float:
    """The ``a`` of the haversine formula for a great-circle distance in metres."""
    return math.sin(min(distance_m / EARTH_RADIUS_M, math.pi) / 2) ** 2


def distance_from_term(a: float) -> float:
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


class GridIndex:
    """Items (driver ids) at points, found by nearest great-circle distance within a radius.

    Ties (equal distances as computed) go to the smallest id, so the answer depends on the
    positions and ids only, never on the order in which items were put.
    """

    def __init__(self, cell_deg: float = DEFAULT_CELL_DEG) -> None:
        if not cell_deg > 0 or abs(360.0 / cell_deg - round(360.0 / cell_deg)) > 1e-6:
            raise ValueError(f"cell_deg {cell_deg} must divide 360 degrees evenly")
        columns = 360.0 / cell_deg
        self._cell_deg = cell_deg
        self._cell_rad = math.radians(cell_deg)
        self._columns = round(columns)
        self._cells: dict[tuple[int, int], dict[str, tuple[float, float, float]]] = {}
        self._where: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._where

    def put(self, item_id: str, latitude: float, longitude: float) -> None:
        """Place ``item_id`` at a point, moving it if it is already held."""
        key = (math.floor(latitude / self._cell_deg), math.floor(longitude / self._cell_deg) % self._columns)
        old = self._where.get(item_id)
        if old is not None and old != key:
            self._drop_from_cell(item_id, old)
        phi = math.radians(latitude)
        self._cells.setdefault(key, {})[item_id] = (phi, math.radians(longitude), math.cos(phi))
        self._where[item_id] = key

    def remove(self, item_id: str) -> bool:
        key = self._where.pop(item_id, None)
        if key is None:
            return False
        self._drop_from_cell(item_id, key)
        return True

    def _drop_from_cell(self, item_id: str, key: tuple[int, int]) -> None:
        cell = self._cells[key]
        del cell[item_id]
        if not cell:
            del self._cells[key]

    def nearest(self, latitude: float, longitude: float, max_distance_m: float) -> tuple[str, float] | None:
        """The nearest item within ``max_distance_m`` metres and its distance, or None."""
        phi0, lam0 = math.radians(latitude), math.radians(longitude)
        cos0 = math.cos(phi0)
        row_f, col_f = latitude / self._cell_deg, longitude / self._cell_deg
        row0, col0 = math.floor(row_f), math.floor(col_f)
        frac_row, frac_col = row_f - row0, col_f - col0
        # Every point within the radius is at most this far from the equator, which bounds
        # how short an east-west step can get (meridians converge towards the poles).
        cos_far = math.cos(min(math.pi / 2, abs(phi0) + max_distance_m / EARTH_RADIUS_M))
        best_a = haversine_term(max_distance_m)
        best_id: str | None = None
        sin = math.sin
        cells = self._cells
        columns = self._columns
        for k in range(columns // 2):
            if k and self._ring_bound(k, frac_row, frac_col, cos_far) > best_a:
                break
            for key in _ring(row0, col0, k, columns):
                cell = cells.get(key)
                if cell is None:
                    continue
                for item_id, (phi, lam, cos_phi) in cell.items():
                    a = sin((phi - phi0) / 2) ** 2 + cos0 * cos_phi * sin((lam - lam0) / 2) ** 2
                    if a < best_a or (a == best_a and (best_id is None or item_id < best_id)):
                        best_a, best_id = a, item_id
        if best_id is None:
            return None
        return best_id, distance_from_term(best_a)

    def _ring_bound(self, k: int, frac_row: float, frac_col: float, cos_far: float) -> float:
        """A lower bound on ``a`` for any point in a cell of ring ``k`` (k >= 1).

        A cell of ring k is k rows or k columns away. k rows away, the latitudes differ by at
        least ``gap``, and ``a >= sin²(Δφ/2)``. k columns away, the longitudes differ by at
        least ``gap``, and ``a >= cos φ1 cos φ2 sin²(Δλ/2) >= cos_far² sin²(Δλ/2)``.
        """
        row_gap = self._cell_rad * min(k - frac_row, k - 1 + frac_row)
        col_gap = min(math.pi, self._cell_rad * min(k - frac_col, k - 1 + frac_col))
        return min(math.sin(row_gap / 2) ** 2, (cos_far * math.sin(col_gap / 2)) ** 2)


def _ring(row0: int, col0: int, k: int, columns: int) -> list[tuple[int, int]]:
    """The cells exactly ``k`` rows or columns from (row0, col0), longitude wrapped."""
    if k == 0:
        return [(row0, col0 % columns)]
    keys = [(row0 - k, (col0 + dc) % columns) for dc in range(-k, k + 1)]
    keys += [(row0 + k, (col0 + dc) % columns) for dc in range(-k, k + 1)]
    for dr in range(-k + 1, k):
        keys.append((row0 + dr, (col0 - k) % columns))
        keys.append((row0 + dr, (col0 + k) % columns))
    return keys
