"""How many fixes per second one dashboard process absorbs, and how fresh its frames stay.

Two parts, each running ``python -m dashboard`` against the broker named by --bootstrap-servers:

1. backlog: a topic filled beforehand with --backlog fixes of recent timestamps; the dashboard
   reads them all back at start (``DASHBOARD_READBACK_S``) with Socket.IO clients connected.
   Its consumed count (``/metrics``, sampled every 0.2 s from its start) gives the time from the
   first fix to the last: the rate is the most it can absorb: Kafka fetch, record decoding,
   validation, state, frames and pushes, on this machine.
2. paced: ``python -m simulator`` sends each --rates value (drivers at one fix a second) for
   --duration seconds while clients are connected; the table shows what was consumed (and sent, from
   the simulator's summary line), the lag at
   the end, fix-to-server latency percentiles (from the ``stats`` event, so they include the
   simulator's batching), frames per second each client got, and the dashboard's CPU and memory.
   Issue 15: its CPU per consumed fix (``cpu_us_per_fix``: the process, all threads, over the run
   and the 2 s after it) beside the goal (15 µs) and the floor measured on the same topic right
   after: kafka-python alone in a fresh process with the driver feed's settings, decoding each fix
   with ``parse_fix`` and nothing else (``floor_cpu_us_per_fix``, bench/kafka_ceiling.py), and the same
   with the records unpacked by bus/lean_fetch.py as the dashboard unpacks them (``lean_floor_cpu_us_per_fix``).
3. idle: the dashboard on an empty topic with the clients connected, no fix sent: its CPU over
   --duration seconds is what it costs to be up (Kafka's fetch rounds, the ticks); at 10,000 fixes/s
   every 1 % of a core is 1 µs per fix.

    .venv/bin/python -m bench.dashboard_ingest
    .venv/bin/python -m bench.dashboard_ingest --parts paced --rates 10000,30000 --clients 10

Prints a table per part and writes everything to bench/results/dashboard_ingest.json.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime, timezone
from typing import Any

import requests
import socketio
from kafka import KafkaProducer

from bench.common import (
    DASHBOARD_ENV,
    Child,
    Simulators,
    Topic,
    bench_parser,
    command_line,
    dashboard_command,
    free_port,
    http_ok,
    parse_and_describe,
    print_table,
    result_path,
    simulator_commands,
    wait_until,
    write_result,
)
from fleet.schema import STATUSES, Fix, encode_fix

QUICK = {"parts": "paced,idle", "rates": "1000", "duration": 5.0}
# Issue 15: the dashboard's CPU per consumed fix (all threads) at 10,000 and 30,000 drivers, read beside the
# floor: kafka-python alone reading the same topic with the driver feed's settings and only decoding each fix
# (``parse_fix``, bench/kafka_ceiling.py's "what the dashboard does" row), in a fresh process of the same run.
GOAL_CPU_US_PER_FIX = 15.0
GOAL_FROM_DRIVERS = 10_000
READBACK_POLL_S = 0.2
IDLE_SETTLE_S = 5.0  # the consumers connected and their topics found
READBACK_TIMEOUT_S = 120.0


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.dashboard_ingest", __doc__, QUICK, "dashboard_ingest")
    parser.add_argument("--parts", default="backlog,paced,idle", help="which parts to run, comma-separated")
    parser.add_argument("--backlog", type=int, default=300_000, help="fixes in the backlog part")
    parser.add_argument("--backlog-drivers", type=int, default=10_000, help="drivers in the backlog part")
    parser.add_argument("--rates", default="10000,20000,30000", help="fixes/s of the paced runs")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per paced run")
    parser.add_argument("--clients", type=int, default=1, help="Socket.IO clients connected during each run")
    return parser


def fix_values(drivers: int, rounds: int, start: float, step: float) -> list[tuple[bytes, bytes]]:
    """Pre-encoded fixes, round by round, so producing costs as little as possible."""
    records = []
    for r in range(rounds):
        for i in range(drivers):
            driver_id = f"drv-{i:06d}"
            fix = Fix(
                driver_id, 40.6 + (i % 1000) * 1e-4, -74.0 + r * 1e-4, start + r * step, 90.0, 30.0, STATUSES[i % 3], r
            )
            records.append((driver_id.encode(), encode_fix(fix)))
    return records


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=131072)


class Dashboard:
    """``python -m dashboard`` on a free port (a :class:`Child`), and clients that count what they get.

    A context manager: leaving it disconnects the clients and stops the dashboard.
    """

    def __init__(self, bootstrap: str, topic: str, readback_s: float) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**DASHBOARD_ENV, "DASHBOARD_READBACK_S": f"{readback_s:g}"}
        self.child = Child(f"ingest-dashboard-{topic}", dashboard_command(self.port, topic, bootstrap), env)
        self.stats: list[dict] = []
        self.events = {"snapshot": 0, "positions": 0, "stats": 0}
        self.bytes = 0
        self._lock = threading.Lock()
        self.clients: list[socketio.Client] = []

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *_exc: object) -> None:
        for client in self.clients:
            client.disconnect()
        self.child.stop(timeout_s=20)

    def connect(self, clients: int) -> None:
        """Wait until the dashboard is healthy, then connect ``clients`` Socket.IO clients."""
        wait_until(lambda: http_ok(self.base + "/healthz"), 30, "the dashboard is healthy", [self.child])
        self.clients = [self._client() for _ in range(clients)]

    def _client(self) -> socketio.Client:
        client = socketio.Client(reconnection=False)

        def counter(name: str):
            def count(payload: dict) -> None:
                with self._lock:
                    self.events[name] += 1
                    self.bytes += len(payload.get("data", b""))
                    if name == "stats":
                        self.stats.append(payload)

            return count

        for name in self.events:
            client.on(name, counter(name))
        client.connect(self.base, transports=["websocket"])
        return client

    def consumed(self) -> float:
        """Valid fixes consumed so far: ``dashboard_fixes_consumed_total`` of ``/metrics``."""
        for line in requests.get(self.base + "/metrics", timeout=5).text.splitlines():
            if line.startswith("dashboard_fixes_consumed_total "):
                return float(line.split()[-1])
        return 0.0


class ReadBack(threading.Thread):
    """Samples a starting dashboard's consumed count until it holds ``expected`` fixes.

    ``seconds`` runs from the last sample with none consumed (taken before the first fix was) to
    the first sample with every fix (taken after the last was): the read-back, never shorter.
    """

    def __init__(self, dashboard: Dashboard, expected: int) -> None:
        super().__init__(daemon=True)
        self.dashboard, self.expected = dashboard, expected
        self.count = 0.0
        self.seconds: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        idle_at = time.monotonic()
        deadline = idle_at + READBACK_TIMEOUT_S
        while self.dashboard.child.alive and time.monotonic() < deadline:
            asked = time.monotonic()
            try:
                self.count = self.dashboard.consumed()
            except requests.RequestException:  # not listening yet
                self.count = 0.0
            if self.count <= 0:
                idle_at = asked
            elif self.count >= self.expected:
                self.seconds = time.monotonic() - idle_at
                break
            self.done.wait(READBACK_POLL_S)
        self.done.set()


def backlog_part(args: argparse.Namespace) -> dict:
    with Topic(args.bootstrap_servers, "dashboard") as topic:
        rounds = max(1, args.backlog // args.backlog_drivers)
        start = time.time() - 50
        records = fix_values(args.backlog_drivers, rounds, start, 40 / rounds)
        kafka = producer(args.bootstrap_servers)
        for key, value in records:
            kafka.send(topic.name, key=key, value=value)
        kafka.flush()
        kafka.close()
        print(f"backlog: {len(records)} fixes of {args.backlog_drivers} drivers in {topic.name}", flush=True)
        with Dashboard(args.bootstrap_servers, topic.name, readback_s=300) as dashboard:
            readback = ReadBack(dashboard, len(records))
            readback.start()
            dashboard.connect(args.clients)
            readback.done.wait(READBACK_TIMEOUT_S + 5)
            cpu = dashboard.child.cpu_s()
            rss = dashboard.child.rss_mib()
        if readback.seconds is None:
            raise RuntimeError(
                f"the dashboard consumed {readback.count:.0f} of {len(records)} fixes in {READBACK_TIMEOUT_S:.0f} s; "
                f"see {dashboard.child.log_path}"
            )
        count, seconds = round(readback.count), round(readback.seconds, 1)
        return {
            "fixes": count,
            "drivers": args.backlog_drivers,
            "clients": args.clients,
            "seconds": seconds,
            "fixes_per_s": round(count / seconds),
            "process_cpu_s": round(cpu, 1),
            "rss_mib": round(rss),
        }


def paced_part(args: argparse.Namespace) -> list[dict]:
    rows = []
    for rate in (int(r) for r in args.rates.split(",")):
        print(f"paced: {rate} fixes/s for {args.duration:.0f} s with {args.clients} clients", flush=True)
        with (
            Topic(args.bootstrap_servers, "dashboard") as topic,
            Dashboard(args.bootstrap_servers, topic.name, readback_s=0) as dashboard,
        ):
            dashboard.connect(args.clients)
            row = paced_measure(args, dashboard, topic.name, rate)
            row.update(floor_of(args.bootstrap_servers, topic.name, row["consumed_total"]))
            row["goal_cpu_us_per_fix"] = GOAL_CPU_US_PER_FIX
            # The goal is for 10,000 drivers and more; below, the dashboard's fixed cost per second dominates.
            if rate < GOAL_FROM_DRIVERS or row["cpu_us_per_fix"] is None:
                row["met"] = "-"
            else:
                row["met"] = "yes" if row["cpu_us_per_fix"] <= GOAL_CPU_US_PER_FIX else "NO"
            rows.append(row)
    return rows


def idle_part(args: argparse.Namespace) -> dict:
    with (
        Topic(args.bootstrap_servers, "dashboard") as topic,
        Dashboard(args.bootstrap_servers, topic.name, readback_s=0) as dashboard,
    ):
        dashboard.connect(args.clients)
        time.sleep(IDLE_SETTLE_S)
        cpu_before, started = dashboard.child.cpu_s(), time.monotonic()
        time.sleep(args.duration)
        cpu, elapsed = dashboard.child.cpu_s() - cpu_before, time.monotonic() - started
        return {
            "seconds": round(elapsed, 1),
            "clients": args.clients,
            "dashboard_cpu_pct": round(100 * cpu / elapsed, 2),
            "rss_mib": round(dashboard.child.rss_mib()),
        }


def floor_of(bootstrap: str, topic: str, count: int) -> dict:
    """kafka-python alone reading ``topic`` from its start with the driver feed's settings, decoding each fix."""
    from bench.kafka_ceiling import consume_in_fresh_process  # noqa: PLC0415 - only the paced part needs it

    floor = consume_in_fresh_process(bootstrap, topic, count)
    lean = consume_in_fresh_process(bootstrap, topic, count, lean=True)
    return {
        "floor_cpu_us_per_fix": round(floor["cpu_us"], 2),
        "lean_floor_cpu_us_per_fix": round(lean["cpu_us"], 2),
        "floor_fixes": floor["records"],
    }


def paced_measure(args: argparse.Namespace, dashboard: Dashboard, topic: str, rate: int) -> dict:
    """Run ``python -m simulator`` with ``rate`` drivers at 1 Hz (one process of its own, as in production)."""
    total_before = dashboard.consumed()
    consumed_before = total_before
    cpu_before = dashboard.child.cpu_s()
    frames_before = dashboard.events["positions"]
    stats_before = len(dashboard.stats)
    started = time.monotonic()
    commands = simulator_commands(rate, topic, args.bootstrap_servers, args.duration, processes=1)
    with Simulators(f"ingest-simulator-{rate}", commands) as simulators:
        summary = simulators.summaries(timeout_s=args.duration + 60)[0]
    # Fix timestamps are the times the simulator meant to send them: its own lateness is in the latency.
    simulator_lags = [window["max_lag_ms"] for window in summary["windows"]]
    time.sleep(2.0)  # let the last fixes through
    elapsed = time.monotonic() - started
    consumed = dashboard.consumed() - consumed_before
    cpu = dashboard.child.cpu_s() - cpu_before
    frames = dashboard.events["positions"] - frames_before
    stats = dashboard.stats[stats_before + 2 : stats_before + int(args.duration)]  # the steady seconds
    latencies = [s["latency_ms"] for s in stats if s["latency_ms"]["p50"] is not None]
    return {
        "drivers_at_1_hz": rate,
        "sent": summary["acknowledged"],
        "consumed": int(consumed),
        "consumed_total": int(total_before + consumed),
        "cpu_us_per_fix": round(cpu / consumed * 1e6, 2) if consumed else None,
        "lag_at_end": dashboard.stats[-1]["kafka"]["lag"] if dashboard.stats else None,
        "simulator_max_lag_ms": max(simulator_lags, default=None),
        "latency_p50_ms": round(statistics.median(x["p50"] for x in latencies), 1) if latencies else None,
        "latency_p99_ms_median": round(statistics.median(x["p99"] for x in latencies), 1) if latencies else None,
        "latency_p99_ms_worst": max(x["p99"] for x in latencies) if latencies else None,
        "frames_per_s_per_client": round(frames / args.clients / elapsed, 1),
        "dashboard_cpu_pct": round(100 * cpu / elapsed),
        "rss_mib": round(dashboard.child.rss_mib()),
        "clients": args.clients,
    }


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Every field of the rows, headed by its name, as it is."""
    return [(key, key, "") for key in rows[0]] if rows else []


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "dashboard_ingest")
    parts = set(args.parts.split(","))
    results: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "command": command_line("bench.dashboard_ingest", argv),
    }
    if "backlog" in parts:
        results["backlog"] = [backlog_part(args)]
        print_table("backlog: the most one dashboard absorbs", results["backlog"], columns(results["backlog"]))
    if "paced" in parts:
        results["paced"] = paced_part(args)
        print_table("paced: a live fleet", results["paced"], columns(results["paced"]))
        for row in results["paced"]:
            print(
                f"{row['drivers_at_1_hz']:,} drivers: the dashboard spent {row['cpu_us_per_fix']} us of CPU per "
                f"consumed fix (goal <= {GOAL_CPU_US_PER_FIX:g} from {GOAL_FROM_DRIVERS:,} drivers: "
                f"{ {'yes': 'met', 'NO': 'NOT met'}.get(row['met'], 'not judged') }); "
                f"the floor, kafka-python reading the same topic and only decoding: {row['floor_cpu_us_per_fix']} us "
                f"({row['lean_floor_cpu_us_per_fix']} us with its records unpacked by bus/lean_fetch.py)"
            )
    if "idle" in parts:
        results["idle"] = [idle_part(args)]
        print_table("idle: no fixes, clients connected", results["idle"], columns(results["idle"]))
    write_result(args.json or result_path("dashboard_ingest", args.quick), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
