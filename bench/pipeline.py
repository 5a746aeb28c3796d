"""The whole pipeline at fleet scale, and the tutorial way beside it, measured in one run.

For each fleet size (--drivers, at one fix a second) and number of viewers (--clients):
``python -m simulator`` (paced; two processes from 20,000 drivers) -> Kafka (the broker at
--bootstrap-servers, a fresh topic of 6 partitions per run) -> ``python -m dashboard`` -> N
``python -m bench.client`` processes (Socket.IO, binary frames decoded as docs/api.md says). The
configurations listed in --baseline run a second time with ``bench/tutorial_dashboard.py`` (one JSON
event per Kafka message) in place of the dashboard, with the same simulator and the same clients.

Each run: clients connect, the simulator starts, --warmup seconds are discarded, then --reps
windows of --duration seconds are measured back to back (the figures are medians over the windows).
Every second the benchmark samples the topic's end offsets (produced), the server's consumed count
(``/metrics`` of the dashboard, ``/healthz`` of the tutorial) and its CPU and memory; the clients
write what they received each second (bench/client.py).

    .venv/bin/python -m bench pipeline                       # the full grid, about 40 minutes
    .venv/bin/python -m bench.pipeline --drivers 10000 --clients 10 --baseline 10000x10 --reps 3

Prints a table per dashboard and the ratios, and writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import requests
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from bench.common import (
    DASHBOARD_ENV,
    PYTHON,
    Child,
    Topic,
    bench_parser,
    broker_process,
    command_line,
    cpu_seconds,
    dashboard_command,
    free_port,
    histogram_percentiles,
    http_ok,
    medians,
    parse_and_describe,
    print_table,
    result_path,
    simulator_commands,
    slope_per_s,
    stop_all,
    wait_until,
    write_result,
)

OURS, TUTORIAL = "dashboard", "tutorial"
# A server past this much memory is stopped: the run is reported as failed, the machine survives.
MAX_SERVER_RSS_MIB = 4096
LAG_FLAT_SHARE = 0.01
# What each sample counts since the start; a window's figure is the difference between its ends.
COUNTERS = ("produced", "consumed", "server_cpu_s", "simulator_cpu_s", "broker_cpu_s", "machine_busy_s")
FRESH_WITHIN_S = 1.5  # interval + 500 ms, the latency target: a driver held this fresh was delivered in time
START_S = 60  # the most a simulator may take to send its first fix (python start-up, Kafka, the fleet)
PROFILER_GRACE_S = 15  # py-spy attaching and writing its file
QUICK = {
    "drivers": "1000,10000",
    "clients": "1,5",
    "baseline": "1000x1,10000x5",
    "duration": 10.0,
    "baseline_duration": 10.0,
    "reps": 1,
    "warmup": 5.0,
}


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.pipeline", __doc__, QUICK, "pipeline")
    parser.add_argument("--drivers", default="1000,10000,30000", help="fleet sizes, drivers at 1 Hz")
    parser.add_argument("--clients", default="1,10,50", help="Socket.IO clients per run")
    parser.add_argument(
        "--baseline",
        default="1000x1,1000x10,10000x1,10000x10",
        help="DRIVERSxCLIENTS runs repeated with the tutorial dashboard ('' for none)",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per measured window")
    parser.add_argument(
        "--baseline-duration", type=float, default=30.0, help="seconds per measured window of the tutorial runs"
    )
    parser.add_argument("--reps", type=int, default=3, help="measured windows per run (medians reported)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds discarded after the simulator starts")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the dashboard during each run's first window: where its CPU goes"
    )
    return parser


@dataclass(frozen=True)
class Run:
    server: str  # OURS or TUTORIAL
    drivers: int
    clients: int
    warmup_s: float
    window_s: float
    reps: int
    profile: bool = False


# --- running one configuration -------------------------------------------------------------------


class Server:
    """The dashboard under test (ours or the tutorial's) in a child process, and how to read its count."""

    def __init__(self, run: Run, topic: str, bootstrap: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.kind = run.server
        if run.server == OURS:
            args, env = dashboard_command(self.port, topic, bootstrap), DASHBOARD_ENV
        else:
            args = [
                PYTHON,
                "-m",
                "bench.tutorial_dashboard",
                "--port",
                str(self.port),
                "--topic",
                topic,
                "--bootstrap-servers",
                bootstrap,
            ]
            env = {}
        self.child = Child(f"{run.server}-{run.drivers}x{run.clients}", args, env)

    def consumed(self) -> float | None:
        """Messages the server has taken from Kafka so far (None when it does not answer in time)."""
        try:
            if self.kind == TUTORIAL:
                return float(requests.get(self.base + "/healthz", timeout=2).json()["consumed"])
            for line in requests.get(self.base + "/metrics", timeout=2).text.splitlines():
                if line.startswith("dashboard_fixes_consumed_total "):
                    return float(line.split()[-1])
        except (requests.RequestException, ValueError, KeyError):
            return None
        return None


def client_command(run: Run, base: str, out: Path, duration_s: float) -> list[str]:
    protocol = "frames" if run.server == OURS else "tutorial"
    return [
        PYTHON,
        "-m",
        "bench.client",
        "--url",
        base,
        "--protocol",
        protocol,
        "--drivers",
        str(run.drivers),
        "--fresh-within",
        str(FRESH_WITHIN_S),
        "--duration",
        str(duration_s),
        "--out",
        str(out),
    ]


def connected(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def run_configuration(run: Run, bootstrap: str) -> dict[str, Any]:
    """Start everything for one configuration, sample it every second, stop everything; the summary."""
    total_s = run.warmup_s + run.reps * run.window_s + START_S
    with Topic(bootstrap, "pipeline") as topic:
        # Closed before the topic is deleted: an open consumer's next metadata request would create it again.
        offsets = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
        server = Server(run, topic.name, bootstrap)
        children = [server.child]
        try:
            health = "/healthz"
            wait_until(lambda: http_ok(server.base + health), 60, f"{run.server} is healthy", children)
            outs = [server.child.log_path.with_name(f"{server.child.name}-client{i}.jsonl") for i in range(run.clients)]
            clients = [
                Child(f"{server.child.name}-client{i}", client_command(run, server.base, out, total_s + 30))
                for i, out in enumerate(outs)
            ]
            children += clients
            wait_until(lambda: all(connected(o) for o in outs), 120, f"{run.clients} clients connected", children)
            commands = simulator_commands(run.drivers, topic.name, bootstrap, total_s + 5)
            simulators = [Child(f"simulator-{run.drivers}-{i}", c) for i, c in enumerate(commands)]
            children += simulators
            samples, aborted = sample(run, server, simulators, topic, offsets)
            peak_rss = server.child.peak_rss_mib()
        finally:
            offsets.close()
            stop_all(reversed(children))
        lines = [read_lines(out) for out in outs]
    windows = window_bounds(samples, run)
    reps = [summarize_window(run, samples, lines, start, end) for start, end in windows]
    result = {
        **asdict(run),
        "topic": topic.name,
        "aborted": aborted,
        "server_peak_rss_mib": round(peak_rss),
        "windows": reps,
        "samples": samples,
    }
    if run.profile:
        result["profile"] = summarize_profile(profile_path(server.child))
    if reps:
        result["median"] = medians(reps)
    return result


def sample(
    run: Run, server: Server, simulators: list[Child], topic: Topic, offsets: KafkaConsumer
) -> tuple[list[dict[str, Any]], str | None]:
    """One sample per whole epoch second from the simulator's start until the last window has ended."""
    tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    broker = broker_process()
    samples: list[dict[str, Any]] = []
    profiler = None
    aborted = None
    second = math.ceil(time.time())
    deadline = second + START_S
    first_fix: int | None = None
    while second <= deadline:
        time.sleep(max(0.0, second - time.time()))
        end_offsets = produced(offsets, tps)
        rss = server.child.rss_mib()
        samples.append(
            {
                "t": second,
                "produced": end_offsets,
                "consumed": server.consumed(),
                "server_cpu_s": round(server.child.cpu_s(), 3),
                "server_rss_mib": round(rss, 1),
                "simulator_cpu_s": round(sum(s.cpu_s() for s in simulators), 3),
                "broker_cpu_s": round(cpu_seconds(broker), 3),
                "machine_busy_s": round(machine_busy_s(), 3),
            }
        )
        if first_fix is None and end_offsets:
            first_fix = second
            deadline = second + math.ceil(run.warmup_s) + round(run.reps * run.window_s) + 1
        if run.profile and first_fix is not None and second == first_fix + math.ceil(run.warmup_s):
            profiler = start_profiler(server.child, run.window_s)
        if rss > MAX_SERVER_RSS_MIB:
            aborted = f"server RSS {rss:.0f} MiB over {MAX_SERVER_RSS_MIB} MiB"
            break
        if not server.child.alive:
            aborted = f"server exited ({server.child.process.returncode}): {server.child.log_tail(3)}"
            break
        second = max(second + 1, math.floor(time.time()) + 1)
    if profiler is not None:
        # py-spy writes its file when its --duration is over, not when stopped: let it finish.
        try:
            profiler.process.wait(timeout=run.window_s + PROFILER_GRACE_S)
        except subprocess.TimeoutExpired:
            profiler.stop()
    return samples, aborted


def produced(offsets: KafkaConsumer, tps: list[TopicPartition]) -> int | None:
    """Records in the topic so far (None when the broker does not answer in time: a very busy machine)."""
    try:
        return sum(offsets.end_offsets(tps, timeout_ms=5000).values())
    except KafkaError:
        return None


def profile_path(child: Child) -> Path:
    return child.log_path.with_suffix(".pyspy.txt")


def start_profiler(server: Child, seconds: float) -> Child:
    """py-spy samples the server's stacks for ``seconds`` without pausing it (collapsed stacks, idle left out)."""
    profile_path(server).unlink(missing_ok=True)  # an earlier run's file must not pass for this one's
    command = [
        str(Path(PYTHON).parent / "py-spy"),
        "record",
        "--pid",
        str(server.process.pid),
        "--duration",
        str(round(seconds)),
        "--rate",
        "100",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(profile_path(server)),
    ]
    return Child(f"{server.name}-pyspy", command)


# Where a sampled frame's code lives (py-spy writes "function (package/file.py:line)"); the first match wins.
PROFILE_AREAS = [
    ("(fleet/schema.py", "parse_fix (JSON + validation)"),
    ("(fleet/state.py", "fleet state"),
    ("(fleet/frames.py", "frame encoding"),
    ("(dashboard/metrics.py", "latency metrics"),
    ("(dashboard/", "dashboard"),
    ("(bus/lean_fetch.py", "kafka-python"),  # its record unpacking, done by the project (bus/lean_fetch.py)
    ("(kafka/", "kafka-python"),
    ("(engineio/", "python-engineio/socketio"),
    ("(socketio/", "python-engineio/socketio"),
    ("(eventlet/", "eventlet (hub, green sockets, WebSocket)"),
    ("(json/", "json"),
    ("(prometheus_client/", "metrics"),
]


OTHER_AREA = "other (stdlib: sockets, selectors, threading...)"


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any] | None:
    """Self time by area and by function, from py-spy's collapsed stacks ("frame;frame;leaf count")."""
    if not path.exists():
        return None
    areas: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        leaf = stack.rsplit(";", 1)[-1]
        area = next((name for pattern, name in PROFILE_AREAS if pattern in leaf), OTHER_AREA)
        areas[area] = areas.get(area, 0) + count
        leaves[leaf] = leaves.get(leaf, 0) + count
        total += count
    if not total:
        return None
    share = {k: round(100 * v / total, 1) for k, v in sorted(areas.items(), key=lambda kv: -kv[1])}
    functions = [
        {"function": k, "self_pct": round(100 * v / total, 1)}
        for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
    ]
    return {"samples": total, "self_time_by_area_pct": share, "top_functions": functions, "raw": str(path)}


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent not idle (other engineers' work included)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()[1:] if line.strip()]


def window_bounds(samples: list[dict[str, Any]], run: Run) -> list[tuple[int, int]]:
    """The measured windows: back to back, after the warm-up, which starts with the first fix in Kafka."""
    started = [s["t"] for s in samples if s["produced"]]
    if not started:
        return []
    first = started[0] + math.ceil(run.warmup_s)
    last = samples[-1]["t"]
    bounds = []
    for k in range(run.reps):
        start, end = first + round(k * run.window_s), first + round((k + 1) * run.window_s)
        if end <= last:
            bounds.append((start, end))
    return bounds


# --- the figures of one window -------------------------------------------------------------------


def at(samples: list[dict[str, Any]], t: int, key: str) -> float | None:
    """The value of ``key`` at second ``t``, or at the nearest second that has one."""
    candidates = [s for s in samples if s.get(key) is not None]
    if not candidates:
        return None
    return min(candidates, key=lambda s: abs(s["t"] - t))[key]


def summarize_window(
    run: Run, samples: list[dict[str, Any]], lines: list[list[dict[str, Any]]], start: int, end: int
) -> dict[str, Any]:
    seconds = end - start
    delta = {key: at(samples, end, key) - at(samples, start, key) for key in COUNTERS}
    inside = [s for s in samples if start <= s["t"] <= end and s["consumed"] is not None and s["produced"] is not None]
    lag = [(s["t"], s["produced"] - s["consumed"]) for s in inside]
    lag_slope = slope_per_s(lag)
    clients = client_figures(run, lines, start, end)
    delivered = clients.pop("fixes_total")
    server_cpu = delta["server_cpu_s"]
    return {
        "start": start,
        "produced_per_s": round(delta["produced"] / seconds, 1),
        "consumed_per_s": round(delta["consumed"] / seconds, 1),
        "delivered_per_s": round(delivered / seconds, 1),
        "lag_start": lag[0][1] if lag else None,
        "lag_end": lag[-1][1] if lag else None,
        "lag_max": max(v for _, v in lag) if lag else None,
        "lag_slope_per_s": round(lag_slope, 1),
        # Flat: the lag grows by less than 1 % of the fleet's rate (0.6 s of fixes a minute). A consumer
        # that cannot keep up shows the shortfall itself here (thousands a second).
        "lag_flat": lag_slope < LAG_FLAT_SHARE * run.drivers,
        "server_cpu_pct": round(100 * server_cpu / seconds, 1),
        "server_rss_mib_max": max((s["server_rss_mib"] for s in inside), default=None),
        "server_cpu_us_per_delivered_fix": round(server_cpu / delivered * 1e6, 2) if delivered else None,
        "delivered_per_server_cpu_s": round(delivered / server_cpu) if server_cpu else None,
        "simulator_cpu_pct": round(100 * delta["simulator_cpu_s"] / seconds, 1),
        "broker_cpu_pct": round(100 * delta["broker_cpu_s"] / seconds, 1),
        "machine_cpu_pct": round(100 * delta["machine_busy_s"] / seconds, 1),
        **clients,
    }


def client_figures(run: Run, lines: list[list[dict[str, Any]]], start: int, end: int) -> dict[str, Any]:
    """Received fixes, latency, bytes and freshness over the window, every client together."""
    latency: dict[int, int] = {}
    latency_max = None
    fixes = records = bytes_total = cpu = 0.0
    shares, all_fresh, seconds_seen, reporting = [], 0, 0, 0
    for client_lines in lines:
        window = [line for line in client_lines if start < line["t"] <= end]
        reporting += bool(window)
        for line in window:
            seconds_seen += 1
            fixes += line["fixes"]
            records += line["records"]
            bytes_total += line["bytes"]
            cpu += line["cpu_s"]
            for ms, count in line["latency_ms"].items():
                latency[int(ms)] = latency.get(int(ms), 0) + count
            if line["latency_max_ms"] is not None:
                latency_max = max(latency_max or 0, line["latency_max_ms"])
            shares.append(line["fresh"] / run.drivers)
            all_fresh += line["fresh"] >= run.drivers
    seconds = end - start
    expected = run.clients * seconds
    percentiles = histogram_percentiles(latency, (50, 95, 99))
    return {
        "fixes_total": fixes,
        "delivered_per_s_per_client": round(fixes / seconds / run.clients, 1),
        "records_per_s_per_client": round(records / seconds / run.clients, 1),
        "latency_p50_ms": percentiles["p50"],
        "latency_p95_ms": percentiles["p95"],
        "latency_p99_ms": percentiles["p99"],
        "latency_max_ms": latency_max,
        "bytes_per_s_per_client": round(bytes_total / seconds / run.clients),
        "bytes_per_delivered_fix": round(bytes_total / fixes, 1) if fixes else None,
        "clients_cpu_pct": round(100 * cpu / seconds, 1),
        "clients_reporting": reporting,
        # Each (client, second): the share of the fleet it held a fix of at most FRESH_WITHIN_S old.
        "fresh_share_min": round(min(shares), 4) if shares else 0.0,
        "fresh_share_mean": round(sum(shares) / len(shares), 4) if shares else 0.0,
        "client_seconds_all_fresh": round(all_fresh / expected, 4) if expected else 0.0,
        "every_client_every_driver_each_second": bool(expected) and all_fresh == expected and seconds_seen == expected,
    }


# --- tables --------------------------------------------------------------------------------------

COLUMNS = [
    ("drivers", "drivers", ","),
    ("clients", "clients", ""),
    ("produced_per_s", "produced/s", ",.0f"),
    ("consumed_per_s", "consumed/s", ",.0f"),
    ("delivered_per_s_per_client", "delivered/s/client", ",.0f"),
    ("lag_max", "lag max", ",.0f"),
    ("lag_slope_per_s", "lag slope/s", ",.1f"),
    ("lag_flat", "flat", ""),
    ("latency_p50_ms", "p50 ms", ",.0f"),
    ("latency_p95_ms", "p95 ms", ",.0f"),
    ("latency_p99_ms", "p99 ms", ",.0f"),
    ("latency_max_ms", "max ms", ",.0f"),
    ("fresh_share_min", "fresh min", ".2%"),
    ("every_client_every_driver_each_second", "all fresh", ""),
    ("server_cpu_pct", "CPU %", ".0f"),
    ("server_peak_rss_mib", "peak RSS MiB", ",.0f"),
    ("bytes_per_s_per_client", "B/s/client", ",.0f"),
    ("server_cpu_us_per_delivered_fix", "CPU us/fix", ",.2f"),
]
RATIO_COLUMNS = [
    ("drivers", "drivers", ","),
    ("clients", "clients", ""),
    ("delivered_per_s", "delivered fixes/s", ".2f"),
    ("delivered_per_server_cpu_s", "fixes per CPU s", ".2f"),
    ("server_cpu_us_per_delivered_fix", "CPU per fix", ".3f"),
    ("bytes_per_s_per_client", "bytes/s per client", ".3f"),
    ("bytes_per_delivered_fix", "bytes per fix", ".3f"),
    ("latency_p99_ms", "p99 latency", ".3f"),
]


def table_row(result: dict[str, Any]) -> dict[str, Any]:
    return {
        **result.get("median", {}),
        "drivers": result["drivers"],
        "clients": result["clients"],
        "server_peak_rss_mib": result["server_peak_rss_mib"],
    }


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours divided by the tutorial's, for each configuration that ran both."""
    tutorial = {(r["drivers"], r["clients"]): r for r in results if r["server"] == TUTORIAL and "median" in r}
    rows = []
    for ours in (r for r in results if r["server"] == OURS and "median" in r):
        theirs = tutorial.get((ours["drivers"], ours["clients"]))
        if theirs is None:
            continue
        row: dict[str, Any] = {"drivers": ours["drivers"], "clients": ours["clients"]}
        for key, _, _ in RATIO_COLUMNS[2:]:
            a, b = ours["median"].get(key), theirs["median"].get(key)
            row[key] = round(a / b, 3) if a is not None and b else None
        rows.append(row)
    return rows


def plan(args: argparse.Namespace) -> list[Run]:
    baseline = {tuple(int(x) for x in item.split("x")) for item in args.baseline.split(",") if item.strip()}
    runs = []
    for drivers in (int(d) for d in args.drivers.split(",")):
        for clients in (int(c) for c in args.clients.split(",")):
            runs.append(Run(OURS, drivers, clients, args.warmup, args.duration, args.reps, args.profile))
            if (drivers, clients) in baseline:
                window = args.baseline_duration
                runs.append(Run(TUTORIAL, drivers, clients, args.warmup, window, args.reps, args.profile))
    return runs


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "pipeline")
    runs = plan(args)
    minutes = sum(r.warmup_s + r.reps * r.window_s + 15 for r in runs) / 60
    print(f"{len(runs)} runs, about {minutes:.0f} minutes", flush=True)
    results = []
    for run in runs:
        print(
            f"\n[{run.server}] {run.drivers} drivers, {run.clients} clients: "
            f"{run.warmup_s:g} s warm-up + {run.reps} x {run.window_s:g} s",
            flush=True,
        )
        result = run_configuration(run, args.bootstrap_servers)
        results.append(result)
        if result["aborted"]:
            print(f"  aborted: {result['aborted']}", flush=True)
        if result.get("profile"):
            print(f"  profile (self time): {result['profile']['self_time_by_area_pct']}", flush=True)
        if "median" in result:
            m = result["median"]
            print(
                f"  delivered {m['delivered_per_s_per_client']:,.0f}/s per client, consumed "
                f"{m['consumed_per_s']:,.0f}/s, lag max {m['lag_max']}, p99 {m['latency_p99_ms']} ms, "
                f"CPU {m['server_cpu_pct']:.0f} %, fresh min {m['fresh_share_min']:.2%}",
                flush=True,
            )
    for server in (OURS, TUTORIAL):
        rows = [table_row(r) for r in results if r["server"] == server]
        if rows:
            window = args.duration if server == OURS else args.baseline_duration
            print_table(f"{server} (medians of {args.reps} windows of {window:g} s)", rows, COLUMNS)
    ratio_rows = ratios(results)
    if ratio_rows:
        print_table("ours / tutorial, same configuration, same run", ratio_rows, RATIO_COLUMNS)
    command = command_line("bench.pipeline", argv)
    write_result(
        args.json or result_path("pipeline", args.quick),
        {
            "machine": info,
            "command": command,
            "configuration": vars(args) | {"json": None},
            "runs": results,
            "ratios": ratio_rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
