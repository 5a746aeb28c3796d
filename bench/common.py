"""What the suite's benchmarks share: the parser, the machine, tables, JSON, topics, child processes,
the simulator's summaries, percentiles.

Every part of ``python -m bench`` (bench/suite.py) starts from :func:`bench_parser` and
:func:`parse_and_describe`, and takes its helpers from here; nothing under bench/ imports from tests/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import requests
from kafka import KafkaAdminClient
from kafka import __version__ as kafka_python_version
from kafka.record.util import crc32c_c

from broker.local import BrokerSettings, LocalBroker, kafka_version, port_in_use
from bus.clients import ensure_topics
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
# Smoke runs (--quick) write here, so they never overwrite the measured results in bench/results/.
QUICK_DIR = ROOT / "test-artifacts" / "bench-quick"
LOG_DIR = ROOT / "test-artifacts" / "bench-logs"
PYTHON = sys.executable
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, headless, that neither phones home nor downloads anything (this machine has no such network).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PARTITIONS = 6


def machine() -> dict[str, Any]:
    """The hardware and the Python side: what a figure of this machine depends on."""
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kafka_python": kafka_python_version,
        # kafka-python checksums every record batch in pure Python unless this package is there.
        "crc32c": "C extension" if crc32c_c is not None else "pure Python",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def chromium_version() -> str | None:
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip() or None


def machine_info() -> dict[str, Any]:
    """The machine and the versions a reader needs to compare a later run with this one."""
    info = machine()
    info.update(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        kafka_broker=kafka_version(),
        chromium=chromium_version(),
        processes_over_10pct_cpu=busy_processes(),
    )
    return info


def busy_processes(threshold_pct: float = 10.0) -> list[str]:
    """Other processes using CPU right now (over half a second), to tell a quiet machine from a busy one."""
    procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.5)
    busy = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= threshold_pct and p.pid != os.getpid():
            busy.append(f"{p.info['name']} {pct:.0f}%: {' '.join(p.info['cmdline'] or [])[:100]}")
    return busy


def describe(info: dict[str, Any]) -> str:
    return (
        f"{info['date']}: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, load "
        f"{info['load_average_at_start']}, Python {info['python']}, kafka-python {info['kafka_python']}, "
        f"Kafka {info['kafka_broker']}, {info['chromium'] or 'no chromium'}"
    )


def bench_parser(
    module: str, doc: str, quick: dict[str, Any], result: str, kafka: bool = True
) -> argparse.ArgumentParser:
    """The parser every part of the suite starts from: broker (unless ``kafka`` is false), --quick (with
    what it changes) and --json. Parts add --reps and --duration themselves where they have them."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if kafka:
        parser.add_argument(
            "--bootstrap-servers",
            default=KAFKA_BOOTSTRAP_SERVERS.read(),
            help="the Kafka to use (env KAFKA_BOOTSTRAP_SERVERS)",
        )
    parser.add_argument("--quick", action="store_true", help="a short smoke run: " + json.dumps(quick))
    where = f"where the results go; none: bench/results/{result}.json, with --quick test-artifacts/bench-quick/"
    parser.add_argument("--json", type=Path, default=None, help=where)
    return parser


def parse_and_describe(
    parser: argparse.ArgumentParser, argv: list[str] | None, quick: dict[str, Any], title: str
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse the flags (with --quick, ``quick`` replaces the defaults, never a value typed), and say
    which machine and configuration this run is: printed, and returned for the JSON."""
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in quick.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    info = machine_info()
    print(f"{title}: {describe(info)}", flush=True)
    print(f"configuration: {vars(args)}", flush=True)
    return args, info


def command_line(module: str, argv: list[str] | None) -> str:
    """How this run was started, for the JSON: ``python -m bench.<module> <flags>``."""
    return " ".join(["python -m", module, *(argv if argv is not None else sys.argv[1:])])


def result_path(name: str, quick: bool) -> Path:
    return (QUICK_DIR if quick else RESULTS_DIR) / f"{name}.json"


def write_result(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"written to {shown}", flush=True)


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> None:
    """Rows as an aligned table; ``columns`` are (key, header, format spec), e.g. ("rate", "fixes/s", ",.0f")."""
    print(f"\n{title}")
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([_cell(row.get(key), spec) for key, _, spec in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
    sys.stdout.flush()


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """The same table in Markdown, for docs/benchmarks.md (``python -m bench.report``)."""
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "|".join("---" if not spec else "---:" for _, _, spec in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key), spec) for key, _, spec in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, (int, float)) and spec:
        return format(value, spec)
    return str(value)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))]


def histogram_percentiles(counts: dict[int, int], quantiles: Iterable[float]) -> dict[str, int | None]:
    """Percentiles (nearest rank) of values given as {value: count}, e.g. latencies in whole milliseconds."""
    total = sum(counts.values())
    keys = sorted(counts)
    result: dict[str, int | None] = {}
    for q in quantiles:
        if not total:
            result[f"p{q:g}"] = None
            continue
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for key in keys:
            seen += counts[key]
            if seen >= rank:
                result[f"p{q:g}"] = key
                break
    return result


def medians(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric field over repetitions; other fields from the first row.

    A boolean is true only when it was true in every repetition (a target met in some runs is not met).
    """
    merged: dict[str, Any] = {}
    for key, first in rows[0].items():
        values = [row.get(key) for row in rows]
        if isinstance(first, bool):
            merged[key] = all(values)
        elif isinstance(first, (int, float)) and all(isinstance(v, (int, float)) for v in values):
            merged[key] = statistics.median(values)
        else:
            merged[key] = first
    return merged


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server the benchmark starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports_in_a_row(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive TCP ports free on ``host`` right now (``dashboard.replicas``'s dashboards)."""
    for _ in range(50):
        first = free_port()
        if first + count <= 65536 and not any(port_in_use(p, host) for p in range(first, first + count)):
            return first
    raise RuntimeError(f"found no {count} free ports in a row on {host}")


def cpu_seconds(process: psutil.Process | None) -> float:
    """User and system CPU seconds of ``process`` (every thread) so far; 0 for None."""
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


def broker_process() -> psutil.Process | None:
    """The local broker's JVM, to count its CPU next to ours (None for an external cluster)."""
    pid = LocalBroker(BrokerSettings.from_env()).running_pid()
    return psutil.Process(pid) if pid else None


def slope_per_s(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (time, value) points: how fast a value (a lag) grows per second."""
    if len(points) < 2:
        return 0.0
    ts = [t for t, _ in points]
    vs = [v for _, v in points]
    mean_t, mean_v = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(ts, vs, strict=True)) / var


# From this fleet size on, two simulator processes share the fleet: one sends 30,000 fixes/s only
# at 87 % of a core and 1 % short, two send it exactly (docs/benchmarks.md, "Simulator").
TWO_SIMULATORS_FROM = 20_000


def simulator_commands(
    drivers: int,
    topic: str,
    bootstrap: str,
    duration_s: float,
    processes: int | None = None,
    interval_s: float = 1.0,
    extra: Sequence[str] = (),
) -> list[list[str]]:
    """The real simulator, paced at one fix per driver per ``interval_s``, every driver online.

    ``processes`` share the fleet (each its own seed and id prefix); by default one, two from
    TWO_SIMULATORS_FROM drivers. ``extra`` flags go to every process.
    """
    processes = processes or (2 if drivers >= TWO_SIMULATORS_FROM else 1)
    shares = [drivers // processes + (1 if i < drivers % processes else 0) for i in range(processes)]
    return [
        [
            PYTHON,
            "-m",
            "simulator",
            "--drivers",
            str(share),
            "--interval",
            f"{interval_s:g}",
            "--offline-share",
            "0",
            "--duration",
            str(duration_s),
            "--topic",
            topic,
            "--bootstrap-servers",
            bootstrap,
            "--seed",
            str(i + 1),
            "--id-prefix",
            f"p{i}-",
            *extra,
        ]
        for i, share in enumerate(shares)
    ]


def read_summary(stdout: str) -> dict[str, Any] | None:
    """The simulator's summary: the last line of its stdout that is ``{"summary": {...}}`` (docs/api.md)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith('{"summary":'):
            return json.loads(line)["summary"]
    return None


class Simulators:
    """``python -m simulator`` processes started together; their summaries once they end.

    Their logs (stderr) go to LOG_DIR; stdout, where the summary is, is read at the end. A context
    manager: leaving it stops the ones still running.
    """

    def __init__(self, name: str, commands: Sequence[list[str]]) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_paths = [LOG_DIR / f"{name}-{i}.log" for i in range(len(commands))]
        self.processes: list[subprocess.Popen[str]] = []
        for command, log_path in zip(commands, self.log_paths, strict=True):
            with log_path.open("w") as log:
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                process = subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env
                )
                self.processes.append(process)
        self.handles = [psutil.Process(p.pid) for p in self.processes]

    def __enter__(self) -> Simulators:
        return self

    def __exit__(self, *_exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def summaries(self, timeout_s: float) -> list[dict[str, Any]]:
        """Wait until every simulator has ended; each one's summary (RuntimeError, with its log, if one failed)."""
        summaries = []
        for process, log_path in zip(self.processes, self.log_paths, strict=True):
            out, _ = process.communicate(timeout=timeout_s)
            summary = read_summary(out)
            if process.returncode != 0 or summary is None:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"simulator failed ({process.returncode}), see {log_path}:\n{tail}")
            summaries.append(summary)
        return summaries


def matcher_command(
    bootstrap: str, drivers: str, requests: str, matches: str, group: str, instance: str, *extra: str
) -> list[str]:
    """The real matcher on these topics, as one member ``instance`` of ``group``; ``extra`` flags last."""
    topics = ["--driver-topic", drivers, "--request-topic", requests, "--match-topic", matches]
    member = ["--group-id", group, "--instance-id", instance]
    return [PYTHON, "-m", "matcher", "--bootstrap-servers", bootstrap, *topics, *member, *extra]


def dashboard_command(port: int, topic: str, bootstrap: str) -> list[str]:
    return [PYTHON, "-m", "dashboard", "--port", str(port), "--topic", topic, "--bootstrap-servers", bootstrap]


# The dashboard of a benchmark starts at the live end of its fresh topic and serves the page without tiles.
DASHBOARD_ENV = {"DASHBOARD_READBACK_S": "0", "TILE_URL": "none"}


class Topic:
    """A topic of a unique name for one run, deleted afterwards with the topics named after it
    (its dead-letter topic ``<name>.dlq``, and ``<name>-requests`` and the like a run made)."""

    def __init__(self, bootstrap: str, stem: str, partitions: int = PARTITIONS) -> None:
        self.bootstrap = bootstrap
        self.name = f"bench-{stem}-{uuid.uuid4().hex[:8]}"
        self.partitions = partitions

    def __enter__(self) -> Topic:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","))
        try:
            ensure_topics(admin, {self.name: self.partitions})
        finally:
            admin.close()
        return self

    def __exit__(self, *_exc: object) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","))
        try:
            ours = (self.name + ".", self.name + "-")
            doomed = [n for n in admin.list_topics() if n == self.name or n.startswith(ours)]
            if doomed:
                admin.delete_topics(doomed)
        finally:
            admin.close()


class Child:
    """A process the benchmark started: its output in a log file, its CPU and memory, stopped for sure."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                args,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        self.ps = psutil.Process(self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def cpu_s(self) -> float:
        try:
            return cpu_seconds(self.ps)
        except psutil.Error:
            return 0.0

    def rss_mib(self) -> float:
        try:
            return self.ps.memory_info().rss / 2**20
        except psutil.Error:
            return 0.0

    def peak_rss_mib(self) -> float:
        """The high-water mark of resident memory (VmHWM) over the process's whole life so far."""
        return peak_rss_mib(self.ps)

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def peak_rss_mib(process: psutil.Process) -> float:
    """The high-water mark of resident memory (VmHWM) of ``process`` so far (its RSS now if /proc does not say)."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return process.memory_info().rss / 2**20
    except (OSError, psutil.Error):
        return 0.0


def stop_all(children: Iterable[Child], timeout_s: float = 15.0) -> None:
    """SIGTERM to every child at once, then wait for each (and kill the ones that do not end)."""
    children = list(children)
    for child in children:
        if child.alive:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        child.stop(timeout_s)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, children: Sequence[Child] = ()) -> Any:
    """Poll ``condition`` until it is truthy; fail early, with its log, when one of ``children`` died."""
    deadline = time.monotonic() + timeout_s
    while True:
        dead = next((child for child in children if not child.alive), None)
        if dead is not None:
            code = dead.process.returncode
            raise RuntimeError(f"{dead.name} exited ({code}) waiting until {what}:\n{dead.log_tail()}")
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 now (a server still starting does not answer at all)."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
