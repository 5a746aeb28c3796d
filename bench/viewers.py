"""Many viewers: the fleet through nginx to hundreds of Socket.IO clients spread over several dashboards.

``python -m simulator`` (--drivers at 1 Hz, a fresh topic of 6 partitions) -> Kafka ->
``python -m dashboard.replicas`` (--replicas dashboards behind nginx) -> --clients viewers run by
--client-processes ``python -m bench.crowd`` processes, each viewer from a loopback address of its own
so that nginx's ip_hash spreads them. After --warmup seconds, one window of --duration seconds is
measured. Per dashboard process: its viewers (as nginx routed them, and as its own /metrics counts
them), the share of viewer-seconds in which a viewer held every driver with a fix at most 1.5 s old
(the 1 s interval plus the 500 ms latency target), the share of viewers for which that held in every
second of the window, fix-to-viewer latency (p50, p99; receive time minus the fix's timestamp, one
clock), and the process's CPU and peak RSS; then nginx, the viewers' processes, the simulator and
the broker.

    .venv/bin/python -m bench viewers
    .venv/bin/python -m bench.viewers --drivers 10000 --clients 500 --replicas 2 --duration 60

Prints a table and writes bench/results/viewers.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.common import (
    DASHBOARD_ENV,
    LOG_DIR,
    PYTHON,
    Child,
    Topic,
    bench_parser,
    broker_process,
    command_line,
    cpu_seconds,
    free_port,
    free_ports_in_a_row,
    histogram_percentiles,
    parse_and_describe,
    peak_rss_mib,
    print_table,
    result_path,
    simulator_commands,
    stop_all,
    wait_until,
    write_result,
)

QUICK = {"drivers": 1000, "clients": 40, "client_processes": 2, "warmup": 5.0, "duration": 10.0}
FRESH_WITHIN_S = 1.5
START_S = 60  # the most the simulator may take to send its first fix


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.viewers", __doc__, QUICK, "viewers")
    parser.add_argument("--drivers", type=int, default=10_000, help="fleet size, drivers at 1 Hz")
    parser.add_argument("--clients", type=int, default=500, help="Socket.IO viewers in all")
    parser.add_argument("--replicas", type=int, default=2, help="dashboard processes behind nginx")
    parser.add_argument("--client-processes", type=int, default=4, help="processes the viewers are spread over")
    parser.add_argument("--transport", choices=("websocket", "polling"), default="websocket")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds discarded after the simulator starts")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the measured window")
    return parser


def launcher_children(launcher: Child) -> tuple[dict[str, psutil.Process], list[psutil.Process]]:
    """The dashboards by their upstream address (127.0.0.1:port), and nginx's processes."""
    dashboards, nginx = {}, []
    for child in psutil.Process(launcher.process.pid).children(recursive=True):
        if child.name() == "nginx":
            nginx.append(child)
        elif "dashboard" in child.cmdline():
            dashboards[f"127.0.0.1:{child.environ()['DASHBOARD_PORT']}"] = child
    return dashboards, nginx


def connected_clients(upstream: str) -> float | None:
    """The viewers a dashboard counts itself (its /metrics)."""
    for line in requests.get(f"http://{upstream}/metrics", timeout=5).text.splitlines():
        if line.startswith("dashboard_connected_clients "):
            return float(line.split()[-1])
    return None


def crowd_command(
    args: argparse.Namespace, url: str, first: int, count: int, out: Path, duration_s: float
) -> list[str]:
    return [
        PYTHON,
        "-m",
        "bench.crowd",
        "--url",
        url,
        "--drivers",
        str(args.drivers),
        "--clients",
        str(count),
        "--first-index",
        str(first),
        "--transport",
        args.transport,
        "--fresh-within",
        str(FRESH_WITHIN_S),
        "--duration",
        str(duration_s),
        "--out",
        str(out),
    ]


def header(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    first = path.read_text().split("\n", 1)[0]
    return json.loads(first) if first.endswith("}") else None


def summarize(outs: list[Path], window: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """Per dashboard: viewers, complete viewer-seconds, viewers complete in every second, latency, fixes/s."""
    per: dict[str, dict[str, Any]] = {}
    for out in outs:
        lines = [json.loads(line) for line in out.read_text().splitlines() if line]
        for client in lines[0]["clients"]:
            row = per.setdefault(client["upstream"], {"clients": 0, "failed": set(), "seconds": 0, "complete": 0})
            row["clients"] += 1
        for line in lines[1:]:
            if not window[0] < line["t"] <= window[1]:
                continue
            for upstream, got in line["by_upstream"].items():
                row = per[upstream]
                row["seconds"] += got["clients"]
                row["complete"] += got["complete"]
                row["failed"].update(got["incomplete"])
                row.setdefault("latency", Counter()).update({int(k): v for k, v in got["latency_ms"].items()})
                row["fixes"] = row.get("fixes", 0) + got["fixes"]
    seconds = window[1] - window[0]
    result = {}
    for upstream, row in per.items():
        latency = histogram_percentiles(row.get("latency", {}), (50, 99))
        result[upstream] = {
            "clients": row["clients"],
            "complete_seconds_pct": 100.0 * row["complete"] / row["seconds"] if row["seconds"] else None,
            "always_complete_pct": 100.0 * (row["clients"] - len(row["failed"])) / row["clients"],
            "p50_ms": latency["p50"],
            "p99_ms": latency["p99"],
            "fixes_per_s_per_client": row.get("fixes", 0) / seconds / row["clients"],
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = main_parser()
    args, info = parse_and_describe(parser, argv, QUICK, "viewers")
    total_s = args.warmup + args.duration + START_S
    outs = [LOG_DIR / f"viewers-crowd{i}.jsonl" for i in range(args.client_processes)]
    for out in outs:
        out.unlink(missing_ok=True)
    with Topic(args.bootstrap_servers, "viewers") as topic:
        port, first = free_port(), free_ports_in_a_row(args.replicas)
        url = f"http://127.0.0.1:{port}"
        env = {
            **DASHBOARD_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap_servers,
            "DRIVER_TOPIC": topic.name,
            "RIDE_REQUEST_TOPIC": topic.name + "-requests",
            "RIDE_MATCH_TOPIC": topic.name + "-matches",
            "REPLICAS_COUNT": str(args.replicas),
            "REPLICAS_PORT": str(port),
            "REPLICAS_FIRST_DASHBOARD_PORT": str(first),
            "REPLICAS_WORK_DIR": str(LOG_DIR / "viewers-nginx"),
        }
        launcher = Child("viewers-replicas", [PYTHON, "-m", "dashboard.replicas"], env)
        children = [launcher]
        try:
            wait_until(lambda: url in launcher.log_path.read_text(), 60, "the dashboards answer behind nginx", children)
            dashboards, nginx = launcher_children(launcher)
            quota, extra = divmod(args.clients, args.client_processes)
            shares = [quota + (i < extra) for i in range(args.client_processes)]
            starts = [sum(shares[:i]) for i in range(len(shares))]
            crowds = [
                Child(f"viewers-crowd{i}", crowd_command(args, url, starts[i], shares[i], outs[i], total_s + 60))
                for i in range(args.client_processes)
            ]
            children += crowds
            wait_until(lambda: all(header(o) for o in outs), 300, f"{args.clients} viewers connected", children)
            simulators = [
                Child(f"viewers-simulator{i}", c)
                for i, c in enumerate(simulator_commands(args.drivers, topic.name, args.bootstrap_servers, total_s))
            ]
            children += simulators
            time.sleep(args.warmup)
            wait_until(lambda: True, 1, "everything still runs", children)
            broker = broker_process()
            measured = {"dashboards": list(dashboards.values()), "nginx": nginx, "crowds": [c.ps for c in crowds]}
            measured["simulators"] = [s.ps for s in simulators]
            measured["broker"] = [broker] if broker else []
            t0 = math.ceil(time.time())
            time.sleep(t0 - time.time())
            cpu0 = {k: [cpu_seconds(p) for p in ps] for k, ps in measured.items()}
            time.sleep(args.duration)
            t1 = math.floor(time.time())
            cpu1 = {k: [cpu_seconds(p) for p in ps] for k, ps in measured.items()}
            wait_until(lambda: True, 1, "everything still runs", children)
            counted = {upstream: connected_clients(upstream) for upstream in dashboards}
            peak = {upstream: peak_rss_mib(p) for upstream, p in dashboards.items()}
            nginx_rss = sum(p.memory_info().rss for p in nginx) / 2**20
            time.sleep(1.5)  # the viewers' line of the window's last second
        finally:
            stop_all(children[1:])
            code = launcher.stop(30)
    window = (t0, t1)
    per = summarize(outs, window)
    rows = []
    span = t1 - t0
    for i, upstream in enumerate(dashboards):
        cpu = 100.0 * (cpu1["dashboards"][i] - cpu0["dashboards"][i]) / span
        row = {"process": f"dashboard {upstream}", **per.get(upstream, {}), "metrics_clients": counted[upstream]}
        rows.append({**row, "cpu_pct": cpu, "rss_mib": peak[upstream]})
    for name in ("nginx", "crowds", "simulators", "broker"):
        cpu = 100.0 * (sum(cpu1[name]) - sum(cpu0[name])) / span
        rows.append({"process": name, "cpu_pct": cpu, "rss_mib": nginx_rss if name == "nginx" else None})
    columns = [
        ("process", "process", ""),
        ("clients", "viewers", ",d"),
        ("metrics_clients", "its /metrics", ",.0f"),
        ("complete_seconds_pct", "complete seconds", ".2f"),
        ("always_complete_pct", "viewers complete every second", ".1f"),
        ("fixes_per_s_per_client", "fixes/s per viewer", ",.0f"),
        ("p50_ms", "p50 ms", ",d"),
        ("p99_ms", "p99 ms", ",d"),
        ("cpu_pct", "CPU %", ".0f"),
        ("rss_mib", "peak RSS MiB", ".0f"),
    ]
    print_table(
        f"{args.drivers:,} drivers at 1 Hz, {args.clients} {args.transport} viewers, {args.replicas} dashboards "
        f"behind nginx, {span} s window after {args.warmup:.0f} s warm-up (launcher exit code {code})",
        rows,
        columns,
    )
    config = {**vars(args), "json": str(args.json) if args.json else None}
    payload = {"command": command_line("bench.viewers", argv), "machine": info, "config": config, "rows": rows}
    write_result(args.json or result_path("viewers", args.quick), payload)
    return 0 if code == 0 and all(r.get("clients") for r in rows[: len(dashboards)]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
