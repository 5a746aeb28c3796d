"""How many fixes a second the zone processor sustains with 100, 1,000 and 10,000 polygon zones; its event latency.

For each zone count: that many 12-vertex polygons (~250-600 m across, uniformly over the nyc box, so
with 10,000 zones a point lies in ~20 of them) are written to a fresh compacted ``zones`` topic, and a
backlog of --backlog fixes of --drivers drivers (random walks, 10 m per fix) to a fresh 6-partition
``driver-location``. Then ``python -m zones`` starts (reading the whole backlog: --start-lookback-s is an
hour) and works through it, exactly once as always (transactions every 100 ms, changelog, offsets):

- fixes/s: committed offsets (the group's) over time, the slope between 10 % and 90 % of the backlog;
- CPU per fix: the processor's CPU seconds in that window over the fixes committed in it;
- latency: afterwards --rate fixes/s for --duration s, each stamped with the time it is sent; a
  read_committed consumer of ``zone-events`` takes, for every event, now minus the event's timestamp
  (the fix's): fix sent to event committed and read, p50 / p99.

With 1,000 zones the same backlog is also worked through by two processes (one group, the partitions
split), for the combined rate.

    .venv/bin/python -m bench.zones
    .venv/bin/python -m bench.zones --quick

Prints a table and writes everything to bench/results/zones.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import threading
import time
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import (
    PYTHON,
    Child,
    Topic,
    bench_parser,
    command_line,
    parse_and_describe,
    percentile,
    print_table,
    result_path,
    stop_all,
    wait_until,
    write_result,
)
from bus.clients import ensure_topics
from fleet.geo import AREAS, destination
from fleet.zones import encode_zone, parse_zone

QUICK = {"zones": "100,1000", "drivers": 2000, "backlog": 30000, "duration": 5.0, "two": False}
BOX = AREAS["nyc"]
COLUMNS = [
    ("zones", "zones", ","),
    ("processes", "processes", ""),
    ("fixes_per_s", "fixes/s", ",.0f"),
    ("cpu_us_per_fix", "CPU µs/fix", ",.0f"),
    ("events_per_1000_fixes", "events/1,000 fixes", ",.1f"),
    ("latency_p50_ms", "latency p50 ms", ",.0f"),
    ("latency_p99_ms", "latency p99 ms", ",.0f"),
    ("start_s", "start s", ",.1f"),
]


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.zones", __doc__, QUICK, "zones")
    parser.add_argument("--zones", default="100,1000,10000", help="zone counts, comma-separated")
    parser.add_argument("--drivers", type=int, default=10000, help="drivers in the backlog")
    parser.add_argument("--backlog", type=int, default=200000, help="fixes written before the processor starts")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixes/s in the latency phase")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the latency phase")
    parser.add_argument(
        "--two", action=argparse.BooleanOptionalAction, default=True, help="also two processes, 1,000 zones"
    )
    return parser


def polygons(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    values = []
    for n in range(count):
        lat = rng.uniform(BOX.min_lat, BOX.max_lat)
        lon = rng.uniform(BOX.min_lon, BOX.max_lon)
        radius = rng.uniform(125.0, 300.0)
        ring = []
        for k in range(12):
            r = radius * rng.uniform(0.7, 1.0)
            p_lat, p_lon = destination(lat, lon, 30.0 * k, r)
            ring.append([p_lon, p_lat])
        feature = {
            "type": "Feature",
            # dwell_s longer than the jump from the backlog's timestamps to the live phase's: no burst of dwells
            "properties": {"name": f"zone {n}", "dwell_s": 900},
            "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
        }
        values.append(encode_zone(parse_zone(feature, f"z{n}")))
    return values


class Walkers:
    """``count`` drivers on random walks over the box, 10 m a step."""

    def __init__(self, count: int, seed: int = 2) -> None:
        self.rng = random.Random(seed)
        self.where = [
            (
                self.rng.uniform(BOX.min_lat, BOX.max_lat),
                self.rng.uniform(BOX.min_lon, BOX.max_lon),
                self.rng.uniform(0, 360),
            )
            for _ in range(count)
        ]

    def step(self, n: int) -> tuple[float, float]:
        lat, lon, heading = self.where[n]
        heading = (heading + self.rng.uniform(-20, 20)) % 360
        lat, lon = destination(lat, lon, heading, 10.0)
        if not (BOX.min_lat < lat < BOX.max_lat and BOX.min_lon < lon < BOX.max_lon):
            heading = (heading + 180) % 360
        self.where[n] = (lat, lon, heading)
        return lat, lon


def fix_value(driver: int, lat: float, lon: float, timestamp: float) -> bytes:
    return (
        f'{{"driver_id":"d{driver}","latitude":{lat:.6f},"longitude":{lon:.6f},"timestamp":{timestamp:.3f}}}'
    ).encode()


def write_backlog(producer: KafkaProducer, topic: str, walkers: Walkers, fixes: int) -> None:
    drivers = len(walkers.where)
    rounds = math.ceil(fixes / drivers)
    t0 = time.time() - rounds - 10
    sent = 0
    for r in range(rounds):
        for n in range(drivers):
            if sent == fixes:
                break
            lat, lon = walkers.step(n)
            producer.send(topic, key=f"d{n}".encode(), value=fix_value(n, lat, lon, t0 + r))
            sent += 1
    producer.flush()


def processor(name: str, topic: str, bootstrap: str, instance: str) -> Child:
    return Child(
        f"zones-{name}-{instance}",
        [
            PYTHON,
            "-m",
            "zones",
            "--bootstrap-servers",
            bootstrap,
            "--driver-topic",
            topic,
            "--zones-topic",
            topic + "-zones",
            "--events-topic",
            topic + "-events",
            "--state-topic",
            topic + "-state",
            "--group-id",
            topic + "-group",
            "--instance-id",
            instance,
            "--start-lookback-s",
            "3600",
            "--log-interval-s",
            "5",
        ],
    )


def committed(admin: KafkaAdminClient, group: str, topic: str) -> int:
    offsets = admin.list_group_offsets(group).get(group, {})
    return sum(o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset >= 0)


class EventReader(threading.Thread):
    """Reads zone-events read_committed; per event, now minus the event's (fix's) timestamp."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), isolation_level="read_committed")
        self.topic = topic
        self.events = 0
        self.latencies: list[float] = []
        self.measure_after = math.inf  # only events of fixes sent after this
        self.running = True

    def run(self) -> None:
        while self.running and not self.consumer.partitions_for_topic(self.topic):
            time.sleep(0.2)
        partitions = [TopicPartition(self.topic, p) for p in self.consumer.partitions_for_topic(self.topic)]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        while self.running:
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                for record in records:
                    self.events += 1
                    timestamp = json.loads(record.value)["timestamp"]
                    if timestamp >= self.measure_after:
                        self.latencies.append(now - timestamp)
        self.consumer.close()


def run_one(args: argparse.Namespace, zones: int, processes: int) -> dict[str, Any]:
    bootstrap = args.bootstrap_servers
    with Topic(bootstrap, f"zones{zones}", partitions=6) as topic:
        name = topic.name
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
        producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=256 * 1024)
        children: list[Child] = []
        reader = EventReader(bootstrap, name + "-events")
        try:
            ensure_topics(admin, {name + "-zones": 1}, {"cleanup.policy": "compact"})
            for n, value in enumerate(polygons(zones)):
                producer.send(name + "-zones", key=f"z{n}".encode(), value=value)
            walkers = Walkers(args.drivers)
            write_backlog(producer, name, walkers, args.backlog)
            started = time.monotonic()
            children = [processor(name, name, bootstrap, f"p{i}") for i in range(processes)]
            group = name + "-group"
            wait_until(lambda: committed(admin, group, name) > 0, 120, "the processor commits", children)
            start_s = time.monotonic() - started
            reader.start()
            points: list[tuple[float, int, float]] = []
            while True:
                done = committed(admin, group, name)
                points.append((time.monotonic(), done, sum(c.cpu_s() for c in children)))
                if done >= args.backlog:
                    break
                if any(not c.alive for c in children):
                    raise RuntimeError("a processor died:\n" + "\n".join(c.log_tail() for c in children))
                time.sleep(0.25)
            low = next(p for p in points if p[1] >= 0.1 * args.backlog)
            high = next(p for p in points if p[1] >= 0.9 * args.backlog)
            fixes = high[1] - low[1]
            seconds = high[0] - low[0]
            rate = fixes / seconds if seconds > 0 else float("nan")
            cpu_us = 1e6 * (high[2] - low[2]) / fixes if fixes else float("nan")
            backlog_events = reader.events
            # latency: paced fixes, stamped with the time they are sent
            reader.measure_after = time.time()
            interval = 1.0 / args.rate
            next_send = time.monotonic()
            end = next_send + args.duration
            n = 0
            while time.monotonic() < end:
                driver = n % args.drivers
                lat, lon = walkers.step(driver)
                producer.send(name, key=f"d{driver}".encode(), value=fix_value(driver, lat, lon, time.time()))
                n += 1
                next_send += interval
                delay = next_send - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.flush()
            # every fix processed and committed, then every event read: no slow event left out of the percentiles
            wait_until(lambda: committed(admin, group, name) >= args.backlog + n, 300, "the live fixes are committed")
            seen = -1
            while seen != reader.events:
                seen = reader.events
                time.sleep(1.0)
            latencies = sorted(reader.latencies)
        finally:
            reader.running = False
            stop_all(children)
            producer.close()
            admin.close()
    row = {
        "zones": zones,
        "processes": processes,
        "fixes_per_s": rate,
        "cpu_us_per_fix": cpu_us,
        "events_per_1000_fixes": 1000 * backlog_events / args.backlog,
        "latency_p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "latency_p99_ms": 1000 * percentile(latencies, 99) if latencies else None,
        "latency_events": len(latencies),
        "start_s": start_s,
    }
    print_table(f"{zones} zones, {processes} process(es)", [row], COLUMNS)
    return row


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "zone processor bench")
    runs = [(int(z), 1) for z in str(args.zones).split(",")]
    if args.two:
        runs.append((1000, 2))
    rows = [run_one(args, zones, processes) for zones, processes in runs]
    print_table("the zone processor: backlog rate, CPU, event latency", rows, COLUMNS)
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line("bench.zones", argv),
        "machine": info,
        "configuration": {k: v for k, v in vars(args).items() if k != "json"},
        "rows": rows,
    }
    write_result(args.json or result_path("zones", args.quick), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
