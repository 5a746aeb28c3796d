"""How fast the matcher finds the nearest free driver, and how many ride requests a second it answers.

Two parts:

1. query: nearest-driver queries in-process, for 10,000 / 1,000 / 100 free drivers spread over the
   nyc box: the matcher's grid (several cell sizes) against an h3 index searched k-ring by k-ring
   and a brute-force scan, all in the same run, every answer checked against brute force. Also a
   rider with no driver within the radius (the worst case: every ring is searched), and the cost
   of moving a driver in the index (one per fix).
2. service: ``python -m matcher`` as a subprocess against the broker, with ``python -m simulator``
   moving 10,000 drivers at 1 Hz; requests paced at --rate for --duration s, then a backlog of
   --burst requests sent at once. Answers are read read_committed: answers/s, time from request
   to committed answer (p50/p99), and the matcher's CPU.

    .venv/bin/python -m bench.matcher
    .venv/bin/python -m bench.matcher --parts query --queries 5000

Prints a table per part and writes everything to bench/results/matcher.json.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import h3
import psutil
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import (
    PYTHON,
    ROOT,
    bench_parser,
    broker_process,
    cpu_seconds,
    matcher_command,
    parse_and_describe,
    result_path,
    write_result,
)
from bus.clients import ensure_topics
from fleet.geo import AREAS, destination
from fleet.rides import MATCHED, RideRequest, encode_request, parse_match, request_key
from matcher.index import DEFAULT_CELL_DEG, GridIndex, distance_from_term, haversine_term

QUICK = {"parts": "query", "drivers": "1000", "queries": 300}
BOX = AREAS["nyc"]
RADIUS_M = 5000.0
GRID_CELLS = [0.001, 0.0025, DEFAULT_CELL_DEG, 0.01]
H3_RESOLUTIONS = [8, 9, 10]


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.matcher", __doc__, QUICK, "matcher")
    parser.add_argument("--parts", default="query,service", help="which parts to run, comma-separated")
    parser.add_argument("--drivers", default="10000,1000,100", help="free drivers for the query part")
    parser.add_argument("--queries", type=int, default=3000, help="queries per index in the query part")
    parser.add_argument("--fleet", type=int, default=10000, help="simulated drivers (1 Hz) in the service part")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second in the paced phase")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the paced phase")
    parser.add_argument("--burst", type=int, default=20000, help="requests sent at once after the paced phase")
    parser.add_argument(
        "--reservation-timeout-s",
        type=float,
        default=2.0,
        help="the matcher's hold on a matched driver; no simulated trip starts, so this frees drivers",
    )
    return parser


# --- part 1: queries ----------------------------------------------------------------------------


class BruteForce:
    """Every free driver's distance, every query: the baseline."""

    def __init__(self) -> None:
        self.points: dict[str, tuple[float, float, float]] = {}

    def put(self, item_id: str, lat: float, lon: float) -> None:
        phi = math.radians(lat)
        self.points[item_id] = (phi, math.radians(lon), math.cos(phi))

    def nearest(self, lat: float, lon: float, max_m: float):
        phi0, lam0 = math.radians(lat), math.radians(lon)
        cos0 = math.cos(phi0)
        best_a, best_id = haversine_term(max_m), None
        sin = math.sin
        for item_id, (phi, lam, cos_phi) in self.points.items():
            a = sin((phi - phi0) / 2) ** 2 + cos0 * cos_phi * sin((lam - lam0) / 2) ** 2
            if a < best_a or (a == best_a and (best_id is None or item_id < best_id)):
                best_a, best_id = a, item_id
        return None if best_id is None else (best_id, distance_from_term(best_a))


class H3Index:
    """The h3 option: drivers by cell at one resolution, searched ring by ring with grid_ring.

    Stops once the next ring cannot beat the best distance. Centres of cells k rings apart are
    at least 1.5 k edge lengths apart, and a point lies within one edge length of its cell's
    centre, so ring k is at least (1.5 k - 2) edges away; the edge is the smallest of the origin
    cell's, less 10 % for the distortion of nearby cells.
    """

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution
        self.cells: dict[str, dict[str, tuple[float, float, float]]] = {}
        self.where: dict[str, str] = {}

    def put(self, item_id: str, lat: float, lon: float) -> None:
        cell = h3.latlng_to_cell(lat, lon, self.resolution)
        old = self.where.get(item_id)
        if old is not None and old != cell:
            del self.cells[old][item_id]
        phi = math.radians(lat)
        self.cells.setdefault(cell, {})[item_id] = (phi, math.radians(lon), math.cos(phi))
        self.where[item_id] = cell

    def nearest(self, lat: float, lon: float, max_m: float):
        origin = h3.latlng_to_cell(lat, lon, self.resolution)
        edge = 0.9 * min(h3.edge_length(e, "m") for e in h3.origin_to_directed_edges(origin))
        phi0, lam0 = math.radians(lat), math.radians(lon)
        cos0 = math.cos(phi0)
        best_a, best_id = haversine_term(max_m), None
        sin = math.sin
        k = 0
        while k == 0 or haversine_term(max(0.0, (1.5 * k - 2) * edge)) <= best_a:
            for cell in h3.grid_ring(origin, k):
                for item_id, (phi, lam, cos_phi) in self.cells.get(cell, {}).items():
                    a = sin((phi - phi0) / 2) ** 2 + cos0 * cos_phi * sin((lam - lam0) / 2) ** 2
                    if a < best_a or (a == best_a and (best_id is None or item_id < best_id)):
                        best_a, best_id = a, item_id
            k += 1
        return None if best_id is None else (best_id, distance_from_term(best_a))


def random_point(rnd: random.Random) -> tuple[float, float]:
    return rnd.uniform(BOX.min_lat, BOX.max_lat), rnd.uniform(BOX.min_lon, BOX.max_lon)


def time_queries(index, queries: list[tuple[float, float]], expected: list) -> dict:
    times = []
    wrong = 0
    for (lat, lon), want in zip(queries, expected, strict=True):
        start = time.perf_counter()
        found = index.nearest(lat, lon, RADIUS_M)
        times.append(time.perf_counter() - start)
        wrong += (found and found[0]) != (want and want[0])
    times.sort()
    return {
        "median_us": statistics.median(times) * 1e6,
        "p99_us": times[int(len(times) * 0.99)] * 1e6,
        "wrong": wrong,
    }


def time_puts(index, drivers: dict[str, tuple[float, float]], rnd: random.Random) -> float:
    """Microseconds to move one driver by up to 15 m (one fix at 1 Hz), the median of 5 rounds."""
    moves = [(d, *destination(lat, lon, rnd.uniform(0, 360), rnd.uniform(0, 15))) for d, (lat, lon) in drivers.items()]
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for driver_id, lat, lon in moves:
            index.put(driver_id, lat, lon)
        rounds.append((time.perf_counter() - start) / len(moves))
    return statistics.median(rounds) * 1e6


def part_query(args: argparse.Namespace) -> list[dict]:
    rows = []
    print(
        f"\n[query] nearest free driver within {RADIUS_M / 1000:g} km, {args.queries} queries per index, "
        f"drivers and riders uniform over the nyc box {BOX}"
    )
    print(f"{'drivers':>7} {'index':>16} {'median us':>10} {'p99 us':>9} {'vs brute':>9} {'put us':>7} {'wrong':>5}")
    for count in (int(n) for n in args.drivers.split(",")):
        rnd = random.Random(count)
        drivers = {f"drv-{n:05d}": random_point(rnd) for n in range(count)}
        queries = [random_point(rnd) for _ in range(args.queries)]
        # The worst case: riders 6-9 km outside the box, no driver within the radius.
        lonely = [destination(*BOX.center, rnd.uniform(0, 360), rnd.uniform(15000, 18000)) for _ in range(200)]
        indexes = [("brute force", BruteForce())]
        indexes += [(f"grid {cell:g} deg", GridIndex(cell)) for cell in GRID_CELLS]
        indexes += [(f"h3 res {res}", H3Index(res)) for res in H3_RESOLUTIONS]
        for _, index in indexes:
            for driver_id, (lat, lon) in drivers.items():
                index.put(driver_id, lat, lon)
        brute = indexes[0][1]
        expected = [brute.nearest(lat, lon, RADIUS_M) for lat, lon in queries]
        expected_lonely = [brute.nearest(lat, lon, RADIUS_M) for lat, lon in lonely]
        baseline = None
        for name, index in indexes:
            timing = time_queries(index, queries, expected)
            worst = time_queries(index, lonely, expected_lonely)
            baseline = baseline or timing["median_us"]
            row = {
                "drivers": count,
                "index": name,
                **timing,
                "speedup_vs_brute": baseline / timing["median_us"],
                "no_driver_median_us": worst["median_us"],
                "no_driver_wrong": worst["wrong"],
                "put_us": time_puts(index, drivers, rnd),
            }
            rows.append(row)
            wrong = row["wrong"] + row["no_driver_wrong"]
            print(
                f"{count:>7} {name:>16} {row['median_us']:>10.1f} {row['p99_us']:>9.1f} "
                f"{row['speedup_vs_brute']:>8.0f}x {row['put_us']:>7.2f} {wrong:>5}"
            )
        print(
            f"{'':>7} {'(no driver in 5 km)':>16} "
            + ", ".join(f"{r['index']} {r['no_driver_median_us']:.0f} us" for r in rows if r["drivers"] == count)
        )
    return rows


# --- part 2: the service -------------------------------------------------------------------------


class AnswerReader(threading.Thread):
    """Reads ride-matches read_committed; notes when each answer became visible."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), isolation_level="read_committed")
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.seen: dict[str, tuple[float, float, str]] = {}  # request -> (requested_at, visible_at, outcome)
        self.duplicates = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                for record in records:
                    answer = parse_match(record.value, now)
                    if answer.request_id in self.seen:
                        self.duplicates += 1
                    self.seen[answer.request_id] = (answer.requested_at, now, answer.outcome)
        self.consumer.close()


def send_requests(producer: KafkaProducer, topic: str, first: int, count: int, rate: float | None) -> None:
    """``count`` requests at ``rate`` a second (None: as fast as possible), all over the nyc box."""
    rnd = random.Random(first)
    start = time.monotonic()
    for n in range(count):
        lat, lon = random_point(rnd)
        request = RideRequest(f"req-{first + n:07d}", f"rider-{n % 5000}", lat, lon, time.time())
        producer.send(topic, key=request_key(lat, lon), value=encode_request(request))
        if rate is not None and n % 50 == 49:
            delay = start + (n + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    producer.flush()


def wait_for_answers(reader: AnswerReader, ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(i in reader.seen for i in ids):
            return True
        time.sleep(0.1)
    return False


def phase_stats(reader: AnswerReader, ids: list[str], wall_s: float) -> dict:
    latencies = sorted(reader.seen[i][1] - reader.seen[i][0] for i in ids if i in reader.seen)
    answered = [reader.seen[i] for i in ids if i in reader.seen]
    return {
        "requests": len(ids),
        "answered": len(answered),
        "matched": sum(1 for a in answered if a[2] == MATCHED),
        "answers_per_s": len(answered) / wall_s if wall_s else 0.0,
        "latency_p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
        "wall_s": wall_s,
    }


def part_service(args: argparse.Namespace) -> dict:
    bootstrap = args.bootstrap_servers
    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"bench-matcher-{name}-{suffix}" for name in ("drivers", "requests", "matches")}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    ensure_topics(admin, dict.fromkeys(topics.values(), 6))
    print(
        f"\n[service] python -m matcher, {args.fleet} simulated drivers at 1 Hz, reservation timeout "
        f"{args.reservation_timeout_s:g} s; {args.rate:g} requests/s for {args.duration:g} s, "
        f"then {args.burst} at once"
    )
    children: list[subprocess.Popen] = []
    broker = broker_process()
    try:
        simulator = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "simulator",
                "--bootstrap-servers",
                bootstrap,
                "--topic",
                topics["drivers"],
                "--drivers",
                str(args.fleet),
                "--interval",
                "1",
                "--on-trip-share",
                "0",
                "--offline-share",
                "0",
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        children.append(simulator)
        matcher = subprocess.Popen(
            matcher_command(
                bootstrap,
                topics["drivers"],
                topics["requests"],
                topics["matches"],
                f"bench-{suffix}",
                "bench",
                *("--log-interval-s", "5", "--reservation-timeout-s", str(args.reservation_timeout_s)),
            ),
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(matcher)
        log_lines: list[str] = []
        threading.Thread(target=lambda: log_lines.extend(iter(matcher.stderr.readline, "")), daemon=True).start()
        deadline = time.monotonic() + 60
        while not any("resynced" in line for line in log_lines) and time.monotonic() < deadline:
            dead = next((child for child in children if child.poll() is not None), None)
            if dead is not None:  # fail now, not after every answer has timed out
                tail = "".join(log_lines[-10:])
                raise RuntimeError(
                    f"python -m {dead.args[2]} exited ({dead.returncode}) at start; the matcher said:\n{tail}"
                )
            time.sleep(0.2)
        time.sleep(3)  # the simulator's drivers arrive
        reader = AnswerReader(bootstrap, topics["matches"])
        reader.start()
        producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=5)
        process = psutil.Process(matcher.pid)
        results = {}
        first = 0
        phases = [("paced", int(args.rate * args.duration), args.rate), ("burst", args.burst, None)]
        for name, count, rate in phases:
            cpu_before, broker_before = cpu_seconds(process), cpu_seconds(broker)
            start = time.time()
            send_requests(producer, topics["requests"], first, count, rate)
            ids = [f"req-{first + n:07d}" for n in range(count)]
            complete = wait_for_answers(reader, ids, timeout=120)
            elapsed = time.time() - start
            last_visible = max((reader.seen[i][1] for i in ids if i in reader.seen), default=start)
            row = phase_stats(reader, ids, last_visible - start)
            row.update(
                complete=complete,
                matcher_cpu_pct=100 * (cpu_seconds(process) - cpu_before) / elapsed,
                broker_cpu_pct=100 * (cpu_seconds(broker) - broker_before) / elapsed,
                rate_target=rate,
            )
            results[name] = row
            first += count
        results["duplicates"] = reader.duplicates
        results["matcher_log_tail"] = [line.rstrip() for line in log_lines[-6:]]
        reader.done.set()
        producer.close()
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        ours = {*topics.values(), topics["requests"] + ".dlq"}  # the dead-letter topic exists once the matcher ran
        admin.delete_topics([name for name in admin.list_topics() if name in ours])
        admin.close()
    print(
        f"{'phase':>6} {'requests':>8} {'answered':>8} {'matched':>8} {'answers/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'matcher CPU':>11} {'broker CPU':>10}"
    )
    for name in ("paced", "burst"):
        row = results[name]
        print(
            f"{name:>6} {row['requests']:>8} {row['answered']:>8} {row['matched']:>8} {row['answers_per_s']:>9,.0f} "
            f"{row['latency_p50_ms']:>7.0f} {row['latency_p99_ms']:>7.0f} {row['matcher_cpu_pct']:>10.0f}% "
            f"{row['broker_cpu_pct']:>9.0f}%"
        )
    print(f"answered twice: {results['duplicates']}")
    return results


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, f"matcher bench (h3 {h3.__version__})")
    info["h3"] = h3.__version__
    parts = set(args.parts.split(","))
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": info, "radius_m": RADIUS_M}
    if "query" in parts:
        report["query"] = part_query(args)
    if "service" in parts:
        report["service"] = part_service(args)
    write_result(args.json or result_path("matcher", args.quick), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
