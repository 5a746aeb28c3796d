"""Driver tracks: how long one driver's hour takes to read back from a topic holding an hour of the whole fleet.

An hour of --drivers drivers at 1 Hz (bench/history_data.py: CreateTime and ``timestamp`` in the past, keyed
by driver id) goes into a fresh topic of --partitions partitions; one ``python -m dashboard`` serves it. Then
--reps drivers, spread over the fleet, are asked for their whole hour, one after the other, with
``GET /api/drivers/<id>/track``: the wall time of the request (the target: 2 s), the points (one a second),
and what the dashboard read to find them (the records of the driver's partition, all keys). Meanwhile a
thread asks ``/healthz`` every 50 ms: its slowest answer during the reads shows whether a read holds up the
dashboard's other green threads (it should not: polls are small and the read yields after each).

    .venv/bin/python -m bench track
    .venv/bin/python -m bench.track_read --drivers 1000 --seconds 3600 --reps 5

Prints a table and writes bench/results/track_read.json.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

import requests

from bench.common import (
    Topic,
    bench_parser,
    command_line,
    parse_and_describe,
    print_table,
    result_path,
    stop_all,
    write_result,
)
from bench.history_data import driver_id, produce_history
from bench.replay import start_dashboard

QUICK = {"drivers": 200, "seconds": 300, "reps": 3}
# The history ends this long before the reads start, so the whole window is in the past.
END_BEFORE_S = 5.0
TARGET_S = 2.0
COLUMNS = [
    ("driver", "driver", ""),
    ("points", "points", ","),
    ("partition", "partition", ""),
    ("records", "records read", ","),
    ("server_s", "server s", ".2f"),
    ("wall_s", "request s", ".2f"),
    ("within_target", "within 2 s", ""),
    ("healthz_max_ms", "slowest /healthz ms", ".0f"),
]


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.track_read", __doc__, QUICK, "track_read")
    parser.add_argument("--drivers", type=int, default=1000, help="drivers in the history, one fix a second each")
    parser.add_argument("--seconds", type=int, default=3600, help="seconds of history, and of each track asked for")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the history topic")
    parser.add_argument("--reps", type=int, default=5, help="tracks asked for, each of another driver")
    parser.add_argument("--producers", type=int, default=4, help="processes writing the history")
    return parser


class HealthProbe:
    """Asks /healthz every 50 ms in a thread; keeps the slowest answer since the last :meth:`take`."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            started = time.monotonic()
            try:
                requests.get(self.base + "/healthz", timeout=10)
            except requests.RequestException:
                pass
            self.slowest = max(self.slowest, time.monotonic() - started)

    def take(self) -> float:
        slowest, self.slowest = self.slowest, 0.0
        return slowest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def read_track(base: str, driver: str, start: float, end: float) -> tuple[dict[str, Any], float]:
    path = f"/api/drivers/{urllib.parse.quote(driver, safe='')}/track"
    started = time.monotonic()
    response = requests.get(base + path, params={"from": f"{start:.3f}", "to": f"{end:.3f}"}, timeout=60)
    wall = time.monotonic() - started
    response.raise_for_status()
    return response.json(), wall


def measure(base: str, args: argparse.Namespace, start: float, end: float) -> list[dict[str, Any]]:
    probe = HealthProbe(base)
    rows = []
    try:
        time.sleep(1.0)
        probe.take()
        for rep in range(args.reps):
            driver = driver_id(rep * args.drivers // args.reps)
            body, wall = read_track(base, driver, start, end)
            rows.append(
                {
                    "driver": driver,
                    "points": len(body["points"]),
                    "partition": body["read"]["partitions"][0],
                    "records": body["read"]["records"],
                    "server_s": body["read"]["seconds"],
                    "wall_s": wall,
                    "within_target": wall <= TARGET_S,
                    "stopped": body["read"]["stopped"],
                    "healthz_max_ms": probe.take() * 1000,
                }
            )
            print_table(f"track {rep + 1} of {args.reps}", rows[-1:], COLUMNS)
    finally:
        probe.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "track_read")
    with Topic(args.bootstrap_servers, "track", args.partitions) as topic:
        end = time.time() - END_BEFORE_S
        started = time.monotonic()
        count = produce_history(args.bootstrap_servers, topic.name, args.drivers, args.seconds, end, args.producers)
        produced_s = time.monotonic() - started
        print(f"history: {count:,} fixes in {produced_s:.0f} s into {topic.name}", flush=True)
        dashboard, base = start_dashboard(args.bootstrap_servers, topic.name, "track-dashboard")
        try:
            # The whole history, a second on each side: every fix of the driver (they start at end - seconds).
            rows = measure(base, args, end - args.seconds - 1, end + 1)
        finally:
            stop_all([dashboard])
    walls = [r["wall_s"] for r in rows]
    summary = {
        "wall_s_median": statistics.median(walls),
        "wall_s_max": max(walls),
        "within_target": all(r["within_target"] for r in rows),
        "points_min": min(r["points"] for r in rows),
        "healthz_max_ms": max(r["healthz_max_ms"] for r in rows),
    }
    print_table(f"a {args.seconds} s track of one of {args.drivers:,} drivers at 1 Hz", rows, COLUMNS)
    print(
        f"\nmedian {summary['wall_s_median']:.2f} s, slowest {summary['wall_s_max']:.2f} s "
        f"(target {TARGET_S:.0f} s: {'met' if summary['within_target'] else 'NOT met'}); "
        f"slowest /healthz during the reads {summary['healthz_max_ms']:.0f} ms",
        flush=True,
    )
    write_result(
        args.json or result_path("track_read", args.quick),
        {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command_line("bench.track_read", argv),
            "machine": info,
            "configuration": {k: v for k, v in vars(args).items() if k != "json"},
            "history": {"fixes": count, "produced_s": round(produced_s, 1)},
            "rows": rows,
            "summary": summary,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
