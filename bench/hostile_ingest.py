"""What validation costs: the dashboard at a steady fix rate, clean input against input with hostile records mixed in.

Each run: a fresh topic of 6 partitions, ``python -m dashboard`` (dead letters on, one Socket.IO viewer),
and a paced producer in this process sending --rate records a second for --warmup + --duration seconds:
fixes of --drivers drivers, or, in the hostile runs, the same fixes with --hostile of the records
replaced by ``bench/hostile.py``'s hostile producer (every class in turn: not JSON, 17 KB values, JSON
nested 5,000 deep, 400-digit numbers, lone surrogates, future timestamps, another driver's key...). The
runs alternate clean, hostile, clean, hostile... (--reps of each) so that drift of the machine hits both.

Over the measured window the table shows records consumed per second, the dashboard's CPU per consumed
record and per valid fix, the lag's slope (flat: the dashboard keeps up), refusals and dead letters.

    .venv/bin/python -m bench.hostile_ingest
    .venv/bin/python -m bench.hostile_ingest --rate 10000 --hostile 0.01 --reps 3 --duration 30

Writes bench/results/hostile_ingest.json.
"""

from __future__ import annotations

import argparse
import itertools
import random
import threading
import time
from typing import Any

import requests
import socketio
from kafka import KafkaProducer

from bench.common import (
    DASHBOARD_ENV,
    Child,
    Topic,
    bench_parser,
    command_line,
    dashboard_command,
    free_port,
    http_ok,
    medians,
    parse_and_describe,
    print_table,
    result_path,
    slope_per_s,
    stop_all,
    wait_until,
    write_result,
)
from bench.hostile import hostile_fixes
from fleet.schema import STATUSES, Fix, encode_fix

QUICK = {"duration": 8.0, "warmup": 3.0, "reps": 1}
SLICE_S = 0.01  # the producer sends a slice of the second's records every 10 ms
LAG_FLAT_PER_S = 50.0  # records/s: a lag growing slower than this over a window is flat (noise of polls)
COLUMNS = [
    ("input", "input", "<"),
    ("consumed_per_s", "records/s", ">,.0f"),
    ("cpu_pct", "CPU %", ">.1f"),
    ("cpu_us_per_record", "µs/record", ">.1f"),
    ("cpu_us_per_fix", "µs/valid fix", ">.1f"),
    ("lag_slope_per_s", "lag slope/s", ">.1f"),
    ("lag_end", "lag end", ">,.0f"),
    ("refused", "refused", ">,.0f"),
    ("dead_letters", "dead letters", ">,.0f"),
    ("rss_mib", "RSS MiB", ">.0f"),
]


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.hostile_ingest", __doc__, QUICK, "hostile_ingest")
    parser.add_argument("--rate", type=int, default=10_000, help="records produced per second")
    parser.add_argument("--drivers", type=int, default=10_000, help="drivers the fixes belong to")
    parser.add_argument("--hostile", type=float, default=0.01, help="share of records that are hostile")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds discarded at the start of each run")
    parser.add_argument("--reps", type=int, default=3, help="runs of each input, alternating")
    return parser


class PacedProducer(threading.Thread):
    """Sends ``rate`` records a second, a slice every 10 ms; a share of them hostile."""

    def __init__(self, bootstrap: str, topic: str, rate: int, drivers: int, hostile: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.kafka = KafkaProducer(
            bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=131072, max_request_size=2 * 1024 * 1024
        )
        self.topic, self.rate, self.drivers, self.hostile, self.seconds = topic, rate, drivers, hostile, seconds
        self.sent = 0

    def run(self) -> None:
        rng = random.Random(1)
        bad = hostile_fixes(rng, time.time())
        drivers = itertools.cycle(range(self.drivers))
        started = time.monotonic()
        slices = int(self.seconds / SLICE_S)
        per_slice = self.rate * SLICE_S
        due = 0.0
        for n in range(slices):
            due += per_slice
            now = time.time()
            while self.sent < due:
                if self.hostile and rng.random() < self.hostile:
                    record = next(bad)
                    self.kafka.send(self.topic, key=record.key, value=record.value)
                else:
                    i = next(drivers)
                    fix = Fix(
                        f"drv-{i:06d}",
                        40.6 + (i % 1000) * 1e-4,
                        -74.0 + (i // 1000) * 1e-4,
                        now,
                        90.0,
                        30.0,
                        STATUSES[i % 3],
                        self.sent,
                    )
                    self.kafka.send(self.topic, key=fix.driver_id.encode(), value=encode_fix(fix))
                self.sent += 1
            delay = started + (n + 1) * SLICE_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.kafka.flush()
        self.kafka.close()


def sample(base: str) -> dict[str, float]:
    """The dashboard's counts now: valid fixes, refusals, dead letters (from /metrics), lag (from /healthz)."""
    counts = {"fixes": 0.0, "refused": 0.0, "dead_letters": 0.0}
    for line in requests.get(base + "/metrics", timeout=5).text.splitlines():
        if line.startswith("dashboard_fixes_consumed_total "):
            counts["fixes"] = float(line.split()[-1])
        elif line.startswith("dashboard_invalid_messages_total{"):
            counts["refused"] += float(line.split()[-1])
        elif line.startswith("dashboard_dead_letters_total "):
            counts["dead_letters"] = float(line.split()[-1])
    health = requests.get(base + "/healthz", timeout=5).json()
    counts["lag"] = float(health.get("feeds", {}).get("drivers", {}).get("lag") or 0)
    return counts


def one_run(args: argparse.Namespace, hostile: float, rep: int) -> dict[str, Any]:
    label = f"{hostile:.0%} hostile" if hostile else "clean"
    with Topic(args.bootstrap_servers, "hostile" if hostile else "clean") as topic:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        dashboard = Child(
            f"hostile-ingest-{rep}-{label.split()[0]}",
            dashboard_command(port, topic.name, args.bootstrap_servers),
            DASHBOARD_ENV,
        )
        viewer = socketio.Client(reconnection=False)
        try:
            wait_until(lambda: http_ok(base + "/healthz"), 30, "the dashboard is healthy", [dashboard])
            viewer.connect(base, wait_timeout=10)
            producer = PacedProducer(
                args.bootstrap_servers, topic.name, args.rate, args.drivers, hostile, args.warmup + args.duration + 1
            )
            producer.start()
            time.sleep(args.warmup)
            first, cpu0, t0 = sample(base), dashboard.cpu_s(), time.monotonic()
            lags = []
            while time.monotonic() - t0 < args.duration:
                time.sleep(1.0)
                lags.append((time.monotonic() - t0, sample(base)["lag"]))
            last, cpu1, t1 = sample(base), dashboard.cpu_s(), time.monotonic()
            producer.join(30)
            rss = dashboard.rss_mib()
        finally:
            viewer.disconnect()
            stop_all([dashboard])
    seconds = t1 - t0
    fixes, refused = last["fixes"] - first["fixes"], last["refused"] - first["refused"]
    cpu_s = cpu1 - cpu0
    return {
        "input": label,
        "consumed_per_s": (fixes + refused) / seconds,
        "cpu_pct": 100 * cpu_s / seconds,
        "cpu_us_per_record": 1e6 * cpu_s / max(1.0, fixes + refused),
        "cpu_us_per_fix": 1e6 * cpu_s / max(1.0, fixes),
        "lag_slope_per_s": slope_per_s(lags),
        "lag_end": last["lag"],
        "lag_flat": abs(slope_per_s(lags)) < LAG_FLAT_PER_S,
        "refused": refused,
        "dead_letters": last["dead_letters"] - first["dead_letters"],
        "rss_mib": rss,
    }


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "bench.hostile_ingest")
    runs: dict[str, list[dict[str, Any]]] = {"clean": [], "hostile": []}
    for rep in range(args.reps):
        for kind, share in (("clean", 0.0), ("hostile", args.hostile)):
            row = one_run(args, share, rep)
            print(
                f"  rep {rep + 1}: {row['input']}: {row['consumed_per_s']:,.0f} records/s, "
                f"{row['cpu_us_per_record']:.1f} µs/record, lag slope {row['lag_slope_per_s']:.1f}/s",
                flush=True,
            )
            runs[kind].append(row)
    rows = [medians(runs["clean"]), medians(runs["hostile"])]
    ratio = rows[1]["cpu_us_per_record"] / rows[0]["cpu_us_per_record"]
    print_table(f"The dashboard at {args.rate:,} records/s, medians of {args.reps} runs each", rows, COLUMNS)
    print(
        f"CPU per record, hostile / clean: {ratio:.3f} (goal: within 1.10); lag flat: "
        f"{'yes' if rows[0]['lag_flat'] and rows[1]['lag_flat'] else 'NO'}",
        flush=True,
    )
    write_result(
        args.json or result_path("hostile_ingest", args.quick),
        {
            "command": command_line("bench.hostile_ingest", argv),
            "machine": info,
            "configuration": vars(args) | {"json": None},
            "runs": runs,
            "medians": rows,
            "cpu_ratio": ratio,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
