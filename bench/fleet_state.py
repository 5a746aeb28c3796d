"""What one fix costs the dashboard in pure Python: validation, the fleet state, and frame encoding.

No Kafka and no network: the parts of the dashboard's hot path that this project wrote, timed one
by one on pre-built messages for a fleet of --drivers, best of --reps.

    .venv/bin/python -m bench.fleet_state
    .venv/bin/python -m bench.fleet_state --drivers 100000

Prints a table and writes it to bench/results/fleet_state.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timezone

from bench.common import bench_parser, parse_and_describe, result_path, write_result
from fleet import frames
from fleet.schema import STATUSES, Fix, encode_fix, parse_fix
from fleet.state import FleetState

QUICK = {"drivers": 10_000, "reps": 2}


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.fleet_state", __doc__, QUICK, "fleet_state", kafka=False)
    parser.add_argument("--drivers", type=int, default=30_000, help="fixes per step, one per driver")
    parser.add_argument("--reps", type=int, default=5, help="runs per step (the best is kept)")
    return parser


def best_of(repeats: int, step: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        timings.append(time.perf_counter() - started)
    return min(timings)


def measure(drivers: int, repeats: int) -> list[dict]:
    now = time.time()
    fixes = [
        Fix(f"drv-{i:06d}", 40.6 + (i % 1000) * 1e-4, -74.0, now, 90.0, 31.2, STATUSES[i % 3], 7)
        for i in range(drivers)
    ]
    values = [encode_fix(f) for f in fixes]
    records = [(f, i % 6, i) for i, f in enumerate(fixes)]
    newer = [
        (Fix(f.driver_id, f.latitude, f.longitude, now + 1, f.heading, f.speed_kmh, f.status), p, o + drivers)
        for f, p, o in records
    ]
    state = FleetState(max_drivers=max(drivers, 1))
    steps: list[tuple[str, Callable[[], object], int]] = [
        ("parse_fix (JSON + validation)", lambda: [parse_fix(v, now) for v in values], drivers),
        ("apply_batch, new drivers", lambda: FleetState(max_drivers=drivers).apply_batch(records, now), drivers),
    ]
    state.apply_batch(records, now)
    state.take_changes()
    changed = state.snapshot()
    steps += [
        ("apply_batch, known drivers", lambda: _apply_again(state, newer, now), drivers),
        ("encode_records (24-byte records)", lambda: frames.encode_records(changed, now), drivers),
        ("snapshot_payload", lambda: frames.snapshot_payload(changed, 1, now, "t", 30), drivers),
        ("counts (per stats second)", lambda: state.counts(now), drivers),
    ]
    return [
        {"step": name, "drivers": n, "us_per_driver": round(best_of(repeats, step) / n * 1e6, 2)}
        for name, step, n in steps
    ]


def _apply_again(state: FleetState, records: list, now: float) -> None:
    # Each run must see fixes newer than the held ones, or it measures the "older, ignored" path.
    for driver in state:
        driver.timestamp = now
    state.apply_batch(records, now)


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "fleet_state")
    rows = measure(args.drivers, args.reps)
    width = max(len(r["step"]) for r in rows)
    print(f"\n{'step'.ljust(width)}  us/driver")
    for row in rows:
        print(f"{row['step'].ljust(width)}  {row['us_per_driver']:9.2f}")
    by_step = {r["step"]: r["us_per_driver"] for r in rows}
    hot_path = (
        by_step["parse_fix (JSON + validation)"]
        + by_step["apply_batch, known drivers"]
        + by_step["encode_records (24-byte records)"]
    )
    print(f"\nparse + apply + encode: {hot_path:.2f} us per fix = {1e6 / hot_path:,.0f} fixes/s on one core")
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "drivers": args.drivers,
        "steps": rows,
        "hot_path_us_per_fix": round(hot_path, 2),
    }
    write_result(args.json or result_path("fleet_state", args.quick), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
