"""A spatial index of points on the sphere: a latitude/longitude grid searched ring by ring.

Cells are ``cell_deg`` degrees on each side. A query scans the cell of the point, then the
ring of cells around it, then the next ring, and stops as soon as no cell further out can
hold a point nearer than the best one found, or all of them are beyond the search radius.
That stopping rule is a proven lower bound on the great-circle distance (see
:meth:`GridIndex._ring_bound`), so the answer is exactly the brute-force answer, only faster:
``bench/matcher.py`` checks both on every query it times, and compares the grid with h3.

Near a pole a ring of cells is short east-west, so rings could go on around the whole circle
of latitude (36,000 rings of 0.005 degree cells). Every query is therefore bounded twice: to
the *window*, the cells that can hold a point within the radius at all, each once (see
:meth:`GridIndex._window`); and to a few times the occupied cells of the window's rows, which
it then reads from a per-row list instead of ring by ring. No query, at a pole, on the
antimeridian or with a radius as large as the Earth, inspects more than nine cells plus
``LIST_COST + 1`` times the occupied cells of the whole index.

Distances are compared as the haversine term ``a = sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)``,
which grows with distance, so a scan needs no square root or arcsine per candidate.
"""

from __future__ import annotations

import math
from itertools import groupby, product
from operator import itemgetter

from fleet.geo import EARTH_RADIUS_M

# About 560 m north-south (420 m east-west in New York). With 10,000 free drivers in a city a
# cell holds a few dozen and the nearest is usually found in the first cell alone; with no
# driver in reach, a 5 km search looks at its whole window, about 500 cells, or far fewer when
# the rows around hold few drivers. Sizes from 0.001 to 0.01 degrees and h3 are compared in
# docs/benchmarks.md ("Matcher").
DEFAULT_CELL_DEG = 0.005
# The window is widened by this much (relative, then radians: 6 µm) so that rounding in the
# window's trigonometry never leaves out a point that the haversine comparison would take.
_REACH_MARGIN = 1e-9
_REACH_MARGIN_RAD = 1e-12
# A cap of this many radians (6 m) or less from a pole is searched at every longitude: closer,
# the arcsine that gives the cap's longitude span is too ill-conditioned to trust.
_POLE_MARGIN_RAD = 1e-6
# Listing a row's occupied cells and sorting them by ring costs about as much per cell as
# looking this many empty cells up in a ring (measured with bench/matcher.py).
LIST_COST = 4

Key = tuple[int, int]  # (row, column) of a cell
Origin = tuple[float, float, float]  # the query's latitude and longitude in radians, and its cos φ
Cell = tuple[int, int, float, float]  # the query's row and column, and where in the cell it lies (0 to 1)
Window = tuple[int, int, int, int]  # lowest and highest row offset, lowest and highest column offset
Best = tuple[float, str | None]  # the smallest haversine term so far and its item


def haversine_term(distance_m: float) -> float:
    """The ``a`` of the haversine formula for a great-circle distance in metres."""
    return math.sin(min(distance_m / EARTH_RADIUS_M, math.pi) / 2) ** 2


def distance_from_term(a: float) -> float:
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


class GridIndex:
    """Items (driver ids) at points, found by nearest great-circle distance within a radius.

    Ties (equal distances as computed) go to the smallest id, so the answer depends on the
    positions and ids only, never on the order in which items were put. Latitudes are in
    [-90, 90]; longitudes may be any (they wrap), -180 and 180 being the same meridian.

    :attr:`cells_inspected` is how many cells the latest :meth:`nearest` looked at, for tests
    and benchmarks of its cost.
    """

    def __init__(self, cell_deg: float = DEFAULT_CELL_DEG) -> None:
        if not cell_deg > 0 or abs(360.0 / cell_deg - round(360.0 / cell_deg)) > 1e-6:
            raise ValueError(f"cell_deg {cell_deg} must divide 360 degrees evenly")
        columns = 360.0 / cell_deg
        self._cell_deg = cell_deg
        self._cell_rad = math.radians(cell_deg)
        self._columns = round(columns)
        self._min_row = math.floor(-90.0 / cell_deg)
        self._max_row = math.floor(90.0 / cell_deg)
        self._cells: dict[Key, dict[str, tuple[float, float, float]]] = {}
        # The occupied columns of each row: a query near a pole reads these rather than every
        # cell around the circle of latitude. Changes only when a cell fills or empties.
        self._rows: dict[int, set[int]] = {}
        self._where: dict[str, Key] = {}
        self.cells_inspected = 0

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
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = {}
            self._rows.setdefault(key[0], set()).add(key[1])
        phi = math.radians(latitude)
        cell[item_id] = (phi, math.radians(longitude), math.cos(phi))
        self._where[item_id] = key

    def remove(self, item_id: str) -> bool:
        key = self._where.pop(item_id, None)
        if key is None:
            return False
        self._drop_from_cell(item_id, key)
        return True

    def _drop_from_cell(self, item_id: str, key: Key) -> None:
        cell = self._cells[key]
        del cell[item_id]
        if not cell:
            del self._cells[key]
            row = self._rows[key[0]]
            row.discard(key[1])
            if not row:
                del self._rows[key[0]]

    def nearest(self, latitude: float, longitude: float, max_distance_m: float) -> tuple[str, float] | None:
        """The nearest item within ``max_distance_m`` metres and its distance, or None.

        Rings of cells are scanned outwards until the lower bound of the next ring exceeds the
        best distance: rings 0 and 1 (nine cells, where most searches in a city end) before the
        window is worked out, the next ones within it (:meth:`_outer_rings`).
        """
        phi0 = math.radians(latitude)
        origin = (phi0, math.radians(longitude), math.cos(phi0))
        row_f, col_f = latitude / self._cell_deg, longitude / self._cell_deg
        row0, col0 = math.floor(row_f), math.floor(col_f)
        cell = (row0, col0 % self._columns, row_f - row0, col_f - col0)
        reach = min(math.pi, max_distance_m / EARTH_RADIUS_M)
        # Every point within the radius is at most this far from the equator, which bounds
        # how short an east-west step can get (meridians converge towards the poles).
        cos_far = math.cos(min(math.pi / 2, abs(phi0) + reach))
        best = self._scan([(row0, cell[1])], origin, (haversine_term(max_distance_m), None))
        self.cells_inspected = 1
        if self._ring_bound(1, cell, cos_far) <= best[0]:
            best = self._scan(_ring_one(row0, cell[1], self._columns), origin, best)
            self.cells_inspected += 8
            if self._ring_bound(2, cell, cos_far) <= best[0]:
                best = self._outer_rings(origin, cell, reach, cos_far, best)
        best_a, best_id = best
        if best_id is None:
            return None
        return best_id, distance_from_term(best_a)

    def _outer_rings(self, origin: Origin, cell: Cell, reach: float, cos_far: float, best: Best) -> Best:
        """Rings 2 and further (ring 2's bound is checked already), within the window, until the
        lower bound of the next one exceeds the best distance.

        Once the rings would cost ``LIST_COST`` cells per row of the window, the occupied cells
        of those rows are listed; once they would cost ``LIST_COST`` cells per cell listed, the
        rest of the window is read from that list instead (:meth:`_scan_listed`).
        """
        row0, col0, _, _ = cell
        columns = self._columns
        window = self._window(origin[0], cell, reach)
        lo_row, hi_row, lo_col, hi_col = window
        # Rings up to this one lie wholly inside the window and do not cross the antimeridian.
        whole = min(-lo_row, hi_row, -lo_col, hi_col, col0, columns - 1 - col0)
        limit = LIST_COST * min(hi_row - lo_row + 1, len(self._rows))  # what listing the occupied cells costs
        occupied: list[tuple[int, set[int]]] | None = None
        listed = 0
        inspected = self.cells_inspected
        for k in range(2, max(-lo_row, hi_row, -lo_col, hi_col) + 1):
            keys = _whole_ring(row0, col0, k) if k <= whole else _ring(row0, col0, k, window, columns)
            if inspected + len(keys) > limit:
                if occupied is None:
                    occupied = self._occupied_rows(row0 + lo_row, row0 + hi_row)
                    listed = sum(len(cols) for _, cols in occupied)
                    limit = LIST_COST * listed
                if inspected + len(keys) > limit:
                    self.cells_inspected = inspected + listed
                    return self._scan_listed(occupied, origin, cell, window, k, cos_far, best)
            inspected += len(keys)
            best = self._scan(keys, origin, best)
            if self._ring_bound(k + 1, cell, cos_far) > best[0]:
                break
        self.cells_inspected = inspected
        return best

    def _scan(self, keys: list[Key], origin: Origin, best: Best) -> Best:
        """The smaller of ``best`` and the (a, id) of every item in the cells ``keys``."""
        phi0, lam0, cos0 = origin
        best_a, best_id = best
        sin = math.sin
        cells = self._cells
        for key in keys:
            cell = cells.get(key)
            if cell is None:
                continue
            for item_id, (phi, lam, cos_phi) in cell.items():
                a = sin((phi - phi0) / 2) ** 2 + cos0 * cos_phi * sin((lam - lam0) / 2) ** 2
                if a < best_a or (a == best_a and (best_id is None or item_id < best_id)):
                    best_a, best_id = a, item_id
        return best_a, best_id

    def _window(self, phi0: float, cell: Cell, reach: float) -> Window:
        """The row and column offsets from the query's cell of every cell that can hold a point
        within ``reach`` radians of it.

        A point that near differs in latitude by at most ``reach``, and in longitude by at most
        ``asin(sin reach / cos φ0)`` (the widest point of the spherical cap) unless the cap
        holds a pole: then every longitude is in reach. The columns are at most one turn of
        the Earth, each column once, so no cell is ever scanned twice.
        """
        row0, _, frac_row, frac_col = cell
        reach = reach * (1 + _REACH_MARGIN) + _REACH_MARGIN_RAD
        rows = reach / self._cell_rad
        lo_row = max(self._min_row - row0, math.floor(frac_row - rows))
        hi_row = min(self._max_row - row0, math.floor(frac_row + rows))
        columns = self._columns
        if abs(phi0) + reach < math.pi / 2 - _POLE_MARGIN_RAD:
            span = math.asin(min(1.0, math.sin(reach) / math.cos(phi0))) * (1 + _REACH_MARGIN)
            lo_col = math.floor(frac_col - span / self._cell_rad)
            hi_col = math.floor(frac_col + span / self._cell_rad)
            if hi_col - lo_col < columns:
                return lo_row, hi_row, lo_col, hi_col
        lo_col = -(columns // 2)
        return lo_row, hi_row, lo_col, lo_col + columns - 1

    def _occupied_rows(self, first_row: int, last_row: int) -> list[tuple[int, set[int]]]:
        """Each row from ``first_row`` to ``last_row`` that holds items, with its occupied columns."""
        rows = self._rows
        if last_row - first_row + 1 <= len(rows):
            get = rows.get
            return [(row, cols) for row in range(first_row, last_row + 1) if (cols := get(row))]
        return [(row, cols) for row, cols in rows.items() if first_row <= row <= last_row]

    def _scan_listed(
        self,
        occupied: list[tuple[int, set[int]]],
        origin: Origin,
        cell: Cell,
        window: Window,
        k: int,
        cos_far: float,
        best: Best,
    ) -> Best:
        """Scan the occupied cells of the window that rings 0 to ``k - 1`` did not cover, ring by
        ring, until the lower bound of the next ring exceeds the best distance."""
        row0, col0, _, _ = cell
        _, _, lo_col, hi_col = window
        columns = self._columns
        pending = []
        for row, cols in occupied:
            dr = abs(row - row0)
            for col in cols:
                dc = (col - col0 - lo_col) % columns + lo_col  # the column's offset as the window counts it
                ring = max(dr, abs(dc))
                if dc <= hi_col and ring >= k:
                    pending.append((ring, (row, col)))
        pending.sort()
        for ring, group in groupby(pending, key=itemgetter(0)):
            if self._ring_bound(ring, cell, cos_far) > best[0]:
                break
            best = self._scan([key for _, key in group], origin, best)
        return best

    def _ring_bound(self, k: int, cell: Cell, cos_far: float) -> float:
        """A lower bound on ``a`` for any point in a cell of ring ``k`` (k >= 1).

        A cell of ring k is k rows or k columns away. k rows away, the latitudes differ by at
        least ``gap``, and ``a >= sin²(Δφ/2)``. k columns away, the longitudes differ by at
        least ``gap``, and ``a >= cos φ1 cos φ2 sin²(Δλ/2) >= cos_far² sin²(Δλ/2)``.
        """
        _, _, frac_row, frac_col = cell
        row_gap = self._cell_rad * min(k - frac_row, k - 1 + frac_row)
        col_gap = min(math.pi, self._cell_rad * min(k - frac_col, k - 1 + frac_col))
        return min(math.sin(row_gap / 2) ** 2, (cos_far * math.sin(col_gap / 2)) ** 2)


def _ring_one(row0: int, col0: int, columns: int) -> list[Key]:
    """The eight cells around (row0, col0), longitude wrapped; rows past a pole are just empty."""
    north, south, west, east = row0 - 1, row0 + 1, (col0 - 1) % columns, (col0 + 1) % columns
    keys = [
        (north, west),
        (north, col0),
        (north, east),
        (row0, west),
        (row0, east),
        (south, west),
        (south, col0),
        (south, east),
    ]
    return keys if columns >= 3 else list(dict.fromkeys(key for key in keys if key != (row0, col0)))


def _whole_ring(row0: int, col0: int, k: int) -> list[Key]:
    """The cells exactly ``k`` rows or columns from (row0, col0), when none is outside the window
    and the ring does not cross the antimeridian."""
    keys = list(product((row0 - k, row0 + k), range(col0 - k, col0 + k + 1)))
    keys += product(range(row0 - k + 1, row0 + k), (col0 - k, col0 + k))
    return keys


def _ring(row0: int, col0: int, k: int, window: Window, columns: int) -> list[Key]:
    """The cells of the window exactly ``k`` rows or columns from (row0, col0), longitude wrapped.

    ``col0`` is in [0, columns). Built with :func:`itertools.product`: this runs once per ring
    of every query, and a ring is mostly empty cells.
    """
    lo_row, hi_row, lo_col, hi_col = window
    if lo_row <= -k:
        ends: tuple[int, ...] = (row0 - k, row0 + k) if k <= hi_row else (row0 - k,)
    else:
        ends = (row0 + k,) if k <= hi_row else ()
    first, last = col0 + max(-k, lo_col), col0 + min(k, hi_col) + 1
    across: range | list[int] = range(first, last)
    if first < 0 or last > columns:  # the row crosses the antimeridian
        across = [col % columns for col in across]
    west, east = (col0 - k) % columns, (col0 + k) % columns
    if lo_col <= -k:
        sides: tuple[int, ...] = (west, east) if k <= hi_col else (west,)
    else:
        sides = (east,) if k <= hi_col else ()
    keys = list(product(ends, across))
    keys += product(range(row0 + max(-k + 1, lo_row), row0 + min(k - 1, hi_row) + 1), sides)
    return keys
