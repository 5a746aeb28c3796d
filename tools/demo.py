"""`make demo`: start Kafka (unless KAFKA_BOOTSTRAP_SERVERS names one), the dashboard, the matcher and the
simulator, print the URL, and stop everything it started on Ctrl-C.

Before it starts anything it looks for a demo already running and for a taken dashboard port: then it
says where and how to stop the other one and exits with 1, touching nothing. A child that exits makes
the whole demo stop and exit with that child's code and its last line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.cluster import LocalCluster  # noqa: E402
from broker.local import LocalBroker, port_in_use, process_alive  # noqa: E402
from broker.settings import WORK_DIR, BrokerSettings  # noqa: E402
from bus.runtime import install_shutdown  # noqa: E402
from dashboard.settings import DashboardSettings  # noqa: E402
from fleet.errors import FleetError  # noqa: E402
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS  # noqa: E402

# Each process of the demo, in start order.
COMPONENTS = [
    ("dashboard", ["-m", "dashboard"]),
    ("matcher", ["-m", "matcher"]),
    # A dozen riders a minute keeps a 200-driver fleet busy without running out of free drivers.
    ("simulator", ["-m", "simulator", "--riders-per-minute", "12"]),
]
PID_FILE = WORK_DIR / "demo.pid"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class Child:
    """A process of the demo; its stderr goes on to the terminal, and its last line is kept for the summary."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.last_line = ""
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._echo, daemon=True).start()

    def _echo(self) -> None:
        for line in self.process.stderr:
            sys.stderr.write(line)
            if line.strip():
                self.last_line = line.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def demo_already_running(dashboard: DashboardSettings) -> str | None:
    """Why this demo must not start (another demo, or something on the dashboard's port), or None."""
    if PID_FILE.exists():
        pid = int(PID_FILE.read_text().split()[0])
        if process_alive(pid):
            return (
                f"a demo is already running (pid {pid}, map at {dashboard.url}); stop it with Ctrl-C in "
                f"its terminal or `kill {pid}`, then run make demo again"
            )
    if port_in_use(dashboard.port):
        return (
            f"port {dashboard.port} is taken (another dashboard?); stop what listens there "
            f"(`ss -ltnp 'sport = :{dashboard.port}'` shows it), or set DASHBOARD_PORT=5001 make demo"
        )
    return None


def start_kafka() -> tuple[str, Callable[[], object] | None]:
    """Bootstrap servers, and how to stop the Kafka the demo started (None if it was running before)."""
    # Only a cluster named in the environment counts: the setting's default is the local broker's address.
    external = os.environ.get(KAFKA_BOOTSTRAP_SERVERS.name)
    if external:
        say(f"using the Kafka cluster at {external} (KAFKA_BOOTSTRAP_SERVERS); no local broker started")
        return external, None
    settings = BrokerSettings.from_env()
    if settings.nodes > 1:
        return start_cluster(LocalCluster(settings, size=settings.nodes))
    broker = LocalBroker(settings)
    result = broker.start()
    if result.already_running:
        say(f"Kafka broker already running at {broker.bootstrap}; the demo leaves it running")
        return broker.bootstrap, None
    say(f"Kafka broker ready at {broker.bootstrap} in {result.seconds:.1f} s")
    return broker.bootstrap, broker.stop


def start_cluster(cluster: LocalCluster) -> tuple[str, Callable[[], object] | None]:
    result = cluster.start()
    if result.already_running:
        say(f"Kafka cluster of {cluster.size} nodes already running at {cluster.bootstrap}; the demo leaves it running")
        return cluster.bootstrap, None
    say(f"Kafka cluster of {cluster.size} nodes ready at {cluster.bootstrap} in {result.seconds:.1f} s")
    say("try `.venv/bin/python -m broker kill --node 2` and watch the page's Kafka section (docs/kafka-tour.md)")
    return cluster.bootstrap, cluster.stop


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return True
        except urllib.error.HTTPError:
            return True  # it answers; health explains itself on the page
        except OSError:
            time.sleep(0.2)
    return False


def run_children(env: dict[str, str], url: str, stop: threading.Event) -> int:
    """Start the children, then wait until Ctrl-C (0) or until one exits (its exit code, at least 1)."""
    children: list[Child] = []
    failed = 0
    try:
        for name, args in COMPONENTS:
            child = Child(name, args, env)
            children.append(child)
            say(f"started {name} (pid {child.process.pid})")
            if name == "dashboard" and wait_for_http(url, child.process):
                say(f"open {url} in your browser")
        say("running; press Ctrl-C to stop everything the demo started")
        while not stop.is_set() and not failed:
            for child in children:
                code = child.process.poll()
                if code is not None:
                    say(f"{child.name} exited with code {code}: {child.last_line or 'no message'}; stopping the demo")
                    failed = code or 1
            stop.wait(0.5)
    finally:
        for child in reversed(children):
            child.stop()
            say(f"stopped {child.name}")
    return failed


def main() -> int:
    try:
        dashboard = DashboardSettings.from_env()
    except FleetError as e:
        say(f"error: {e}")
        return 2
    reason = demo_already_running(dashboard)
    if reason:
        say(f"not starting: {reason}")
        return 1
    stop = install_shutdown()
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    PID_FILE.write_text(f"{os.getpid()}\n")
    stop_kafka = None
    try:
        bootstrap, stop_kafka = start_kafka()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
        return run_children(env, dashboard.url, stop)
    except FleetError as e:  # the broker could not start (its port taken, no Java...)
        say(f"error: {e}")
        return 1
    finally:
        if stop_kafka is not None:
            stop_kafka()
            say("stopped Kafka")
        PID_FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
