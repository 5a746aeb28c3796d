"""The dashboard's zone and density side: GET /api/density at 30,000 drivers, and counting the drivers in 1,000 zones.

No Kafka and no network: the real application (``create_app``) with its fleet state filled directly,
asked through Flask's test client, so a figure is the time the request holds the dashboard's one
process (the green thread that also ticks the map). Best of --reps; each request of the endpoint is
timed uncached (the dashboard keeps a result for half a second, so viewers asking every second share
one computation). "first request" is one with no cell seen before (each cell's centre and boundary are
encoded once and kept), "request" the best of --reps after it.

    .venv/bin/python -m bench.density
    .venv/bin/python -m bench.density --drivers 100000 --zones 10000

Prints two tables and writes them to bench/results/density.json.
"""

from __future__ import annotations

import argparse
import math
import random
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bench.common import bench_parser, parse_and_describe, print_table, result_path, write_result
from fleet import density
from fleet.rides import RideRequest
from fleet.schema import STATUSES, Fix
from fleet.zones import ZoneTable, parse_zone

QUICK = {"drivers": 5000, "riders": 500, "zones": 100, "zone_drivers": 2000, "reps": 2}
# New York: the simulator's default area, about 30 x 30 km.
LAT0, LON0, SPAN = 40.60, -74.05, 0.3


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.density", __doc__, QUICK, "density", kafka=False)
    parser.add_argument("--drivers", type=int, default=30_000, help="drivers held, a third of them available")
    parser.add_argument("--riders", type=int, default=3000, help="riders waiting")
    parser.add_argument("--zones", type=int, default=1000, help="zones for the inside counts (half polygons)")
    parser.add_argument("--zone-drivers", type=int, default=10_000, help="drivers for the inside counts")
    parser.add_argument("--reps", type=int, default=5, help="runs per figure (the best is kept)")
    return parser


def best_ms(repeats: int, step: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        timings.append(time.perf_counter() - started)
    return round(min(timings) * 1000, 2)


def a_dashboard(drivers: int, riders: int) -> Any:
    """The real application, its fleet and riders filled as its feeds would (no consumer started)."""
    from dashboard.app import create_app  # eventlet's import banner only when this part runs
    from dashboard.settings import DashboardSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = create_app(DashboardSettings(bootstrap_servers="127.0.0.1:1", dead_letter=False))
    service = app.extensions["fleet_dashboard"]
    rng = random.Random(7)
    now = time.time()
    fixes = [(Fix(f"drv-{i:06d}", *_somewhere(rng), now, status=STATUSES[i % 3]), i % 6, i) for i in range(drivers)]
    service.state.apply_batch(fixes, now)
    for i in range(riders):
        service.riders.add_request(RideRequest(f"req-{i}", f"rider-{i}", *_somewhere(rng), now), now)
    return app


def _somewhere(rng: random.Random) -> tuple[float, float]:
    return LAT0 + rng.random() * SPAN, LON0 + rng.random() * SPAN


def measure_density(drivers: int, riders: int, repeats: int) -> list[dict[str, Any]]:
    app = a_dashboard(drivers, riders)
    service = app.extensions["fleet_dashboard"]
    client = app.test_client()
    rows = []
    for resolution in density.RESOLUTIONS:
        for boundary in (False, True):
            url = f"/api/density?resolution={resolution}&boundary={int(boundary)}"

            def request(url: str = url) -> Any:
                service._density.clear()  # uncached: the cost of the first viewer of each half second
                service._density_text.clear()
                response = client.get(url)
                assert response.status_code == 200, response.data[:200]
                return response

            density.cell_boundary.cache_clear()
            density._cell_text.cache_clear()
            started = time.perf_counter()
            body = request().get_json()  # the first request: no cell's centre or boundary encoded yet
            cold_ms = round((time.perf_counter() - started) * 1000, 2)
            service._density.clear()
            count_ms = best_ms(repeats, lambda r=resolution: (service._density.clear(), service.density(r)))
            result, at = service.density(resolution)
            json_ms = best_ms(repeats, lambda d=result, t=at, b=boundary: d.to_json_text(t, b))
            rows.append(
                {
                    "resolution": resolution,
                    "boundary": boundary,
                    "cells": len(body["cells"]),
                    "count_ms": count_ms,
                    "json_ms": json_ms,
                    "cold_request_ms": cold_ms,
                    "request_ms": best_ms(repeats, request),
                    "body_kib": round(len(request().data) / 1024, 1),
                }
            )
    return rows


def zone_table(zones: int, rng: random.Random) -> ZoneTable:
    """``zones`` zones of 200-700 m across, half of them 12-vertex polygons and half circles."""
    table = ZoneTable(max_zones=max(zones, 1))
    for i in range(zones):
        lat, lon = _somewhere(rng)
        size = 0.002 + rng.random() * 0.004
        if i % 2:
            ring = [[lon + size * math.cos(a * math.pi / 6), lat + size * math.sin(a * math.pi / 6)] for a in range(12)]
            geometry = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
            properties: dict[str, Any] = {"name": f"zone {i}"}
        else:
            geometry = {"type": "Point", "coordinates": [lon, lat]}
            properties = {"name": f"zone {i}", "radius_m": 100_000 * size}
        table.put(parse_zone({"type": "Feature", "geometry": geometry, "properties": properties}))
    return table


def measure_inside(zones: int, drivers: int, repeats: int) -> list[dict[str, Any]]:
    from dashboard.zones import InsideCounter
    from fleet.state import FleetState

    rng = random.Random(11)
    table = zone_table(zones, rng)
    state = FleetState(max_drivers=max(drivers, 1))
    now = time.time()
    state.apply_batch(
        [(Fix(f"drv-{i:06d}", *_somewhere(rng), now, status=STATUSES[i % 3]), 0, i) for i in range(drivers)], now
    )
    points = [(d.latitude, d.longitude) for d in state]
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    table.containing(*points[0])  # the tree is built once per change of the table, not per count
    counter = InsideCounter(table, state, lambda _s: None)
    rows = [
        {
            "method": "ZoneTable.containing, one driver at a time",
            "ms": best_ms(repeats, lambda: _one_by_one(table, points)),
        },
        {
            "method": "ZoneTable.containing_many (one query)",
            "ms": best_ms(repeats, lambda: table.containing_many(lats, lons)),
        },
        {"method": "InsideCounter.count (chunks + counts by status)", "ms": best_ms(repeats, counter.count)},
    ]
    inside = sum(n.total for n in counter.inside.values())
    for row in rows:
        row.update(zones=zones, drivers=drivers, inside=inside)
    return rows


def _one_by_one(table: ZoneTable, points: list[tuple[float, float]]) -> None:
    for lat, lon in points:
        table.containing(lat, lon)


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "density")
    density_rows = measure_density(args.drivers, args.riders, args.reps)
    print_table(
        f"GET /api/density, {args.drivers:,} drivers ({args.drivers // 3:,} available), {args.riders:,} riders waiting",
        density_rows,
        [
            ("resolution", "resolution", ""),
            ("boundary", "boundary", ""),
            ("cells", "cells", ",d"),
            ("count_ms", "count ms", ".1f"),
            ("json_ms", "encode ms", ".1f"),
            ("cold_request_ms", "first request ms", ".1f"),
            ("request_ms", "request ms", ".1f"),
            ("body_kib", "body KiB", ",.1f"),
        ],
    )
    inside_rows = measure_inside(args.zones, args.zone_drivers, args.reps)
    print_table(
        f"Drivers inside each zone: {args.zones:,} zones, {args.zone_drivers:,} drivers",
        inside_rows,
        [("method", "method", ""), ("ms", "ms per pass", ".1f"), ("inside", "driver-zone pairs", ",d")],
    )
    write_result(
        args.json or result_path("density", args.quick),
        {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": info,
            "configuration": vars(args) | {"json": str(args.json) if args.json else None},
            "density": density_rows,
            "inside": inside_rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
