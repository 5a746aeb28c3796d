"""How many fixes per second one dashboard process absorbs, and how fresh its frames stay.

Two parts, each running ``python -m dashboard`` against the broker named by --bootstrap-servers:

1. backlog: a topic filled beforehand with --backlog fixes of recent timestamps; the dashboard
   reads them all back at start (``DASHBOARD_READBACK_S``) with Socket.IO clients connected.
   The rate it reports ("read-back done: N records in S s") is the most it can absorb: Kafka fetch,
   record decoding, validation, state, frames and pushes, on this machine.
2. paced: ``python -m simulator`` sends each --rates value (drivers at one fix a second) for
   --duration seconds while clients are connected; the table shows what was consumed, the lag at
   the end, fix-to-server latency percentiles (from the ``stats`` event, so they include the
   simulator's batching), frames per second each client got, and the dashboard's CPU and memory.

    .venv/bin/python -m bench.dashboard_ingest
    .venv/bin/python -m bench.dashboard_ingest --parts paced --rates 10000,30000 --clients 10

Prints a table per part and writes everything to bench/results/dashboard_ingest.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psutil
import requests
import socketio
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from bench.simulator_rate import cpu_seconds, machine
from fleet.schema import STATUSES, Fix, encode_fix
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "dashboard_ingest.json"
READBACK = re.compile(r"read-back done: (\d+) records in ([\d.]+) s")
PARTITIONS = 6


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard_ingest",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bootstrap-servers", default=KAFKA_BOOTSTRAP_SERVERS.read())
    parser.add_argument("--parts", default="backlog,paced", help="which parts to run, comma-separated")
    parser.add_argument("--backlog", type=int, default=300_000, help="fixes in the backlog part")
    parser.add_argument("--backlog-drivers", type=int, default=10_000, help="drivers in the backlog part")
    parser.add_argument("--rates", default="10000,20000,30000", help="fixes/s of the paced runs")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per paced run")
    parser.add_argument("--clients", type=int, default=1, help="Socket.IO clients connected during each run")
    parser.add_argument("--json", type=Path, default=RESULTS)
    return parser


def fix_values(drivers: int, rounds: int, start: float, step: float) -> list[tuple[bytes, bytes]]:
    """Pre-encoded fixes, round by round, so producing costs as little as possible."""
    records = []
    for r in range(rounds):
        for i in range(drivers):
            driver_id = f"drv-{i:06d}"
            fix = Fix(driver_id, 40.6 + (i % 1000) * 1e-4, -74.0 + r * 1e-4, start + r * step, 90.0, 30.0,
                      STATUSES[i % 3], r)  # fmt: skip
            records.append((driver_id.encode(), encode_fix(fix)))
    return records


def new_topic(bootstrap: str) -> str:
    name = f"bench-dashboard-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    admin.create_topics([NewTopic(name, PARTITIONS, 1)], wait_for_metadata=True)
    admin.close()
    return name


def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    existing = set(admin.list_topics())
    admin.delete_topics([n for n in names if n in existing])
    admin.close()


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=131072)


class Dashboard:
    """``python -m dashboard`` on a free port, its log in a file, and clients that count what they get."""

    def __init__(self, bootstrap: str, topic: str, clients: int, readback_s: float) -> None:
        from tests.conftest import free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "test-artifacts" / f"bench-dashboard-{topic}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dashboard", "--port", str(self.port), "--topic", topic,
             "--bootstrap-servers", bootstrap],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "DASHBOARD_READBACK_S": str(readback_s), "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.ps = psutil.Process(self.process.pid)
        self.stats: list[dict] = []
        self.events = {"snapshot": 0, "positions": 0, "stats": 0}
        self.bytes = 0
        self._lock = threading.Lock()
        self._wait_until_healthy()
        self.clients = [self._client() for _ in range(clients)]

    def _wait_until_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the dashboard did not become healthy; see {self.log_path}")

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
        for line in requests.get(self.base + "/metrics", timeout=5).text.splitlines():
            if line.startswith("dashboard_fixes_consumed_total "):
                return float(line.split()[-1])
        return 0.0

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
        self.process.terminate()
        self.process.wait(20)
        self._log.close()


def backlog_part(args: argparse.Namespace) -> dict:
    topic = new_topic(args.bootstrap_servers)
    try:
        rounds = max(1, args.backlog // args.backlog_drivers)
        start = time.time() - 50
        records = fix_values(args.backlog_drivers, rounds, start, 40 / rounds)
        kafka = producer(args.bootstrap_servers)
        for key, value in records:
            kafka.send(topic, key=key, value=value)
        kafka.flush()
        kafka.close()
        print(f"backlog: {len(records)} fixes of {args.backlog_drivers} drivers in {topic}", flush=True)
        dashboard = Dashboard(args.bootstrap_servers, topic, args.clients, readback_s=300)
        try:
            deadline = time.monotonic() + 120
            while dashboard.consumed() < len(records) and time.monotonic() < deadline:
                time.sleep(0.5)
            cpu = cpu_seconds(dashboard.ps)
            rss = dashboard.ps.memory_info().rss
        finally:
            dashboard.close()
        match = READBACK.search(dashboard.log_path.read_text())
        if match is None:
            raise RuntimeError(f"no read-back line in {dashboard.log_path}")
        count, seconds = int(match.group(1)), float(match.group(2))
        return {
            "fixes": count,
            "drivers": args.backlog_drivers,
            "clients": args.clients,
            "seconds": seconds,
            "fixes_per_s": round(count / seconds),
            "process_cpu_s": round(cpu, 1),
            "rss_mib": round(rss / 2**20),
        }
    finally:
        delete_topics(args.bootstrap_servers, [topic, topic + ".dlq"])


def paced_run(args: argparse.Namespace, rate: int) -> dict:
    topic = new_topic(args.bootstrap_servers)
    try:
        dashboard = Dashboard(args.bootstrap_servers, topic, args.clients, readback_s=0)
        try:
            return paced_measure(args, dashboard, topic, rate)
        finally:
            dashboard.close()
    finally:
        delete_topics(args.bootstrap_servers, [topic, topic + ".dlq"])


def paced_measure(args: argparse.Namespace, dashboard: Dashboard, topic: str, rate: int) -> dict:
    """Run ``python -m simulator`` with ``rate`` drivers at 1 Hz (its own process, as in production)."""
    consumed_before = dashboard.consumed()
    cpu_before = cpu_seconds(dashboard.ps)
    frames_before = dashboard.events["positions"]
    stats_before = len(dashboard.stats)
    started = time.monotonic()
    simulator = subprocess.run(
        [sys.executable, "-m", "simulator", "--drivers", str(rate), "--interval", "1", "--offline-share", "0",
         "--duration", str(args.duration), "--topic", topic, "--bootstrap-servers", args.bootstrap_servers],
        cwd=ROOT, capture_output=True, text=True, timeout=args.duration + 60,
    )  # fmt: skip
    if simulator.returncode != 0:
        raise RuntimeError(f"the simulator failed: {simulator.stderr.strip().splitlines()[-1:]}")
    sent = int(re.search(r"acknowledged (\d+)", simulator.stdout).group(1))
    # Fix timestamps are the times the simulator meant to send them: its own lateness is in the latency.
    simulator_lags = [int(x) for x in re.findall(r"max lag (\d+) ms", simulator.stdout + simulator.stderr)]
    time.sleep(2.0)  # let the last fixes through
    elapsed = time.monotonic() - started
    consumed = dashboard.consumed() - consumed_before
    cpu = cpu_seconds(dashboard.ps) - cpu_before
    frames = dashboard.events["positions"] - frames_before
    stats = dashboard.stats[stats_before + 2 : stats_before + int(args.duration)]  # the steady seconds
    latencies = [s["latency_ms"] for s in stats if s["latency_ms"]["p50"] is not None]
    return {
        "drivers_at_1_hz": rate,
        "sent": sent,
        "consumed": int(consumed),
        "lag_at_end": dashboard.stats[-1]["kafka"]["lag"] if dashboard.stats else None,
        "simulator_max_lag_ms": max(simulator_lags, default=None),
        "latency_p50_ms": round(statistics.median(x["p50"] for x in latencies), 1) if latencies else None,
        "latency_p99_ms_median": round(statistics.median(x["p99"] for x in latencies), 1) if latencies else None,
        "latency_p99_ms_worst": max(x["p99"] for x in latencies) if latencies else None,
        "frames_per_s_per_client": round(frames / args.clients / elapsed, 1),
        "dashboard_cpu_pct": round(100 * cpu / elapsed),
        "rss_mib": round(dashboard.ps.memory_info().rss / 2**20),
        "clients": args.clients,
    }


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    print(f"\n{title}")
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).rjust(w) for c, w in zip(columns, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    parts = set(args.parts.split(","))
    print(f"configuration: {vars(args)}", flush=True)
    results: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench.dashboard_ingest " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if "backlog" in parts:
        results["backlog"] = [backlog_part(args)]
        print_table("backlog: the most one dashboard absorbs", results["backlog"])
    if "paced" in parts:
        results["paced"] = []
        for rate in (int(r) for r in args.rates.split(",")):
            print(f"paced: {rate} fixes/s for {args.duration:.0f} s with {args.clients} clients", flush=True)
            results["paced"].append(paced_run(args, rate))
        print_table("paced: a live fleet", results["paced"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
