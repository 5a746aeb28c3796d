"""The density layer's hexagons: corners from the server (``/api/density?boundary=1``) or from h3-js in the browser?

A fresh topic gets --drivers available drivers and --riders waiting riders, spread uniformly over a square of
--span-deg degrees around New York (the demo area is about 0.1 degree: a metro is a few tenths); one
``python -m dashboard`` holds them. Then, in Debian's chromium (the flags of the browser tests), the page's own
code (static/js/density.js: ``hexagons`` and ``DensityLayer``) does what the layer does once a second, --reps
times per H3 resolution and per way, at the zoom the page asks that resolution for (7 at 11, 8 at 12.5, 9 at 14),
with the live fleet drawn meanwhile as on the real page:

- ``server``: fetch ``/api/density?resolution=R&boundary=1``, parse, project the corners, draw;
- ``h3-js cold``: fetch without boundaries, parse, ``h3.cellToBoundary`` for every cell, project, draw;
- ``h3-js cached``: the same with the corners of cells seen before kept (a cell's corners never change, and from
  one second to the next the cells are mostly the same): the layer's steady state with h3-js.

Reported per way: the medians of fetch (the server's work and the transfer), bytes, parse, corners, draw and the
total, in milliseconds; and the server alone from Python (``requests``, with and without ``boundary=1``). h3-js
(npm, the 216 KB UMD build the dashboard serves) is loaded the page's way (``loadH3``), once: its time is reported.

    .venv/bin/python -m bench.density_page
    .venv/bin/python -m bench.density_page --drivers 30000 --riders 3000 --span-deg 0.5 --reps 10

Prints a table and writes bench/results/density_page.json. Everything runs on one machine (broker, dashboard,
browser): on 2 cores the fetch times mostly measure contention; parse, corners and bytes are the comparison.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from typing import Any

import requests
from kafka import KafkaAdminClient, KafkaProducer
from playwright.sync_api import sync_playwright

from bench.common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DASHBOARD_ENV,
    Child,
    Topic,
    bench_parser,
    command_line,
    dashboard_command,
    free_port,
    http_ok,
    parse_and_describe,
    print_table,
    result_path,
    stop_all,
    wait_until,
    write_result,
)
from bus.clients import ensure_topics
from fleet.rides import RideRequest, encode_request, request_key
from fleet.schema import Fix, encode_fix

QUICK = {"drivers": 3000, "riders": 300, "reps": 3, "resolutions": "8"}
CENTRE = (40.75, -73.975)
ZOOMS = {7: 11.0, 8: 12.5, 9: 14.0}  # the zoom at which the page asks each resolution (density.js, resolutionFor)
WAYS = ("server", "h3-js cold", "h3-js cached")
COLUMNS = [
    ("resolution", "res", ""),
    ("way", "corners from", ""),
    ("cells", "cells", ",.0f"),
    ("drawn", "in view", ",.0f"),
    ("kbytes", "KB", ",.1f"),
    ("fetch_ms", "fetch ms", ".1f"),
    ("parse_ms", "parse ms", ".1f"),
    ("corners_ms", "corners ms", ".1f"),
    ("draw_ms", "draw ms", ".1f"),
    ("total_ms", "total ms", ".1f"),
    ("server_ms", "server alone ms", ".1f"),
]
# h3-js loaded as the page loads it (a script element, from the dashboard): milliseconds.
LOAD_H3_JS = """async () => {
  const m = await import("/static/js/density.js");
  const started = performance.now();
  await m.loadH3();
  return performance.now() - started;
}"""
# The page's own code, once per way: what the layer does each second (density.js), timed step by step.
MEASURE_JS = """
async ({ resolution, reps, way, zoom, centre }) => {
  const m = await import("/static/js/density.js");
  const name = Object.keys(window).find((k) => k.startsWith("map_") && window[k] instanceof L.Map);
  const map = window[name];
  map.setView(centre, zoom, { animate: false });
  const h3 = await m.loadH3();
  const layer = new m.DensityLayer().addTo(map);
  const cache = new Map();
  const rows = [];
  const boundary = way === "server" ? "&boundary=1" : "";
  for (let i = -1; i < reps; i += 1) {  // i = -1: a warm-up (fills the cache of "h3-js cached"), not kept
    const t0 = performance.now();
    const response = await fetch(`/api/density?resolution=${resolution}${boundary}`, { cache: "no-store" });
    const text = await response.text();
    const t1 = performance.now();
    const body = JSON.parse(text);
    const t2 = performance.now();
    const corners = way === "server" ? m.serverBoundary : m.h3Boundary(h3, way === "h3-js cached" ? cache : new Map());
    const hexagons = m.hexagons(body.cells, corners);
    const t3 = performance.now();
    layer.setHexagons(hexagons);
    const t4 = performance.now();
    if (i >= 0) rows.push({ cells: body.cells.length, bytes: text.length, fetch_ms: t1 - t0, parse_ms: t2 - t1,
                            corners_ms: t3 - t2, draw_ms: t4 - t3, total_ms: t4 - t0, drawn: layer.drawn });
    await new Promise((done) => setTimeout(done, 100));
  }
  layer.remove();
  return rows;
}
"""


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.density_page", __doc__, QUICK, "density_page")
    parser.add_argument("--drivers", type=int, default=30000, help="available drivers")
    parser.add_argument("--riders", type=int, default=3000, help="waiting riders")
    parser.add_argument("--span-deg", type=float, default=0.5, help="side of the square they are spread over, degrees")
    parser.add_argument("--resolutions", default="7,8,9", help="H3 resolutions to measure")
    parser.add_argument("--reps", type=int, default=10, help="rounds per resolution and way")
    return parser


def produce(bootstrap: str, topic: str, drivers: int, riders: int, span: float, seed: int = 7) -> None:
    """The fleet, every driver available, and the waiting riders: one record each, written and flushed."""
    rng = random.Random(seed)
    kafka = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=256 * 1024)
    now = time.time()

    def point() -> tuple[float, float]:
        return CENTRE[0] + rng.uniform(-span / 2, span / 2), CENTRE[1] + rng.uniform(-span / 2, span / 2)

    for i in range(drivers):
        lat, lon = point()
        fix = Fix(f"drv-{i:05d}", lat, lon, now, status="available")
        kafka.send(topic, key=fix.driver_id.encode(), value=encode_fix(fix))
    for i in range(riders):
        lat, lon = point()
        ride = RideRequest(f"req-{uuid.uuid4().hex[:8]}", f"rider-{i}", lat, lon, now)
        kafka.send(topic + "-requests", key=request_key(lat, lon), value=encode_request(ride))
    kafka.flush()
    kafka.close()


def server_alone(base: str, resolution: int, boundary: bool, reps: int) -> tuple[float, int]:
    """The endpoint's median wall time from Python (no browser), and its body's size: one request every 0.6 s, so
    that each one counts and encodes afresh (the dashboard shares one answer among the requests of half a second)."""
    times, size = [], 0
    for _ in range(reps):
        time.sleep(0.6)
        started = time.perf_counter()
        response = requests.get(f"{base}/api/density", params={"resolution": resolution, "boundary": int(boundary)})
        times.append((time.perf_counter() - started) * 1000)
        size = len(response.content)
    return statistics.median(times), size


def measure(base: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    rows: list[dict[str, Any]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/")
        page.wait_for_function("() => window.fleetDebug && fleetDebug.drivers() > 0", timeout=60000)
        load_ms = page.evaluate(LOAD_H3_JS)
        for resolution in [int(r) for r in args.resolutions.split(",")]:
            server_ms = {}
            for boundary in (False, True):
                ms, size = server_alone(base, resolution, boundary, args.reps)
                print(f"  server alone, resolution {resolution}, boundary={int(boundary)}: {ms:.1f} ms, {size:,} B")
                server_ms[boundary] = ms
            for way in WAYS:
                where = {"zoom": ZOOMS[resolution], "centre": list(CENTRE)}
                samples = page.evaluate(MEASURE_JS, {"resolution": resolution, "reps": args.reps, "way": way, **where})
                row: dict[str, Any] = {"resolution": resolution, "way": way}
                for key in ("cells", "drawn", "fetch_ms", "parse_ms", "corners_ms", "draw_ms", "total_ms"):
                    row[key] = statistics.median(s[key] for s in samples)
                row["kbytes"] = statistics.median(s["bytes"] for s in samples) / 1000
                row["server_ms"] = server_ms[way == "server"]
                rows.append(row)
                print(f"  resolution {resolution}, {way}: total {row['total_ms']:.1f} ms", flush=True)
        browser.close()
    return rows, load_ms


def report(
    args: argparse.Namespace, info: dict[str, Any], argv: list[str] | None, rows: list[dict[str, Any]], load_ms: float
) -> None:
    title = f"density layer, {args.drivers:,} drivers and {args.riders:,} riders over {args.span_deg} degrees"
    title += f" (medians of {args.reps})"
    print_table(title, rows, COLUMNS)
    print(f"h3-js loaded once per page (216 KB, the first time the layer is turned on): {load_ms:.0f} ms")
    write_result(
        args.json or result_path("density_page", args.quick),
        {
            "command": command_line("bench.density_page", argv),
            "machine": info,
            "configuration": {k: str(v) for k, v in vars(args).items()},
            "h3_js_load_ms": load_ms,
            "rows": rows,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "density layer: corners from the server or h3-js")
    children: list[Child] = []
    with Topic(args.bootstrap_servers, "density-page") as topic:
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap_servers.split(","))
        try:
            ensure_topics(
                admin, {topic.name + "-requests": 2, topic.name + "-matches": 2, topic.name + "-zone-events": 2}
            )
            ensure_topics(admin, {topic.name + "-zones": 1}, {"cleanup.policy": "compact"})
        finally:
            admin.close()
        port = free_port()
        env = {
            **DASHBOARD_ENV,
            "DASHBOARD_STALE_AFTER_S": "3600",
            "RIDE_REQUEST_TOPIC": topic.name + "-requests",
            "RIDE_MATCH_TOPIC": topic.name + "-matches",
            "ZONES_TOPIC": topic.name + "-zones",
            "ZONE_EVENTS_TOPIC": topic.name + "-zone-events",
        }
        dashboard = Child("density-page-dashboard", dashboard_command(port, topic.name, args.bootstrap_servers), env)
        children.append(dashboard)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_ok(base + "/healthz"), 60, "the dashboard is healthy", children)
            produce(args.bootstrap_servers, topic.name, args.drivers, args.riders, args.span_deg)
            wait_until(
                lambda: (
                    requests.get(base + "/api/drivers", params={"limit": 1}, timeout=5).json()["count"] >= args.drivers
                ),
                120,
                f"the dashboard holds {args.drivers:,} drivers",
                children,
            )
            rows, load_ms = measure(base, args)
        finally:
            stop_all(children)
        report(args, info, argv, rows, load_ms)  # before the topics go: a broker slow to delete them loses nothing
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
