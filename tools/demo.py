"""`make demo`: start Kafka (unless KAFKA_BOOTSTRAP_SERVERS names one), the dashboard and the
simulator, print the URL, and stop everything it started on Ctrl-C."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.local import BrokerConfig, BrokerError, LocalBroker  # noqa: E402
from bus.runtime import install_shutdown  # noqa: E402
from dashboard.settings import HOST, PORT  # noqa: E402
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS  # noqa: E402

# Each process of the demo, in start order; a module not built yet is reported and skipped.
COMPONENTS = [
    ("dashboard", ["-m", "dashboard"]),
    ("matcher", ["-m", "matcher"]),
    # A dozen riders a minute keeps a 200-driver fleet busy without running out of free drivers.
    ("simulator", ["-m", "simulator", "--riders-per-minute", "12"]),
]


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def start_kafka() -> tuple[str, LocalBroker | None]:
    """Bootstrap servers, and the broker to stop at the end if the demo started it."""
    # Only a cluster named in the environment counts: the setting's default is the local broker's address.
    external = os.environ.get(KAFKA_BOOTSTRAP_SERVERS.name)
    if external:
        say(f"using the Kafka cluster at {external} (KAFKA_BOOTSTRAP_SERVERS); no local broker started")
        return external, None
    broker = LocalBroker(BrokerConfig.from_env())
    result = broker.start()
    if result.already_running:
        say(f"Kafka broker already running at {broker.bootstrap}; the demo leaves it running")
        return broker.bootstrap, None
    say(f"Kafka broker ready at {broker.bootstrap} in {result.seconds:.1f} s")
    return broker.bootstrap, broker


def dashboard_url() -> str:
    host = "127.0.0.1" if HOST.read() in {"0.0.0.0", ""} else HOST.read()
    return f"http://{host}:{PORT.read()}"


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


def main() -> int:
    stop = install_shutdown()
    try:
        bootstrap, own_broker = start_kafka()
    except BrokerError as e:
        say(f"error: {e}")
        return 1
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
    children: list[tuple[str, subprocess.Popen]] = []
    missing = []
    try:
        for name, args in COMPONENTS:
            if importlib.util.find_spec(f"{name}.__main__") is None:
                missing.append(name)
                continue
            process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, start_new_session=True)
            children.append((name, process))
            say(f"started {name} (pid {process.pid})")
            if name == "dashboard":
                url = dashboard_url()
                if wait_for_http(url, process):
                    say(f"open {url} in your browser")
                else:
                    say(f"the dashboard did not answer at {url}; see its log above")
        if missing:
            say(f"not built yet: {', '.join(missing)} (see the open issues)")
        say("running; press Ctrl-C to stop everything the demo started")
        while not stop.is_set():
            for name, process in children:
                if process.poll() is not None:
                    say(f"{name} exited with code {process.returncode}; stopping the demo")
                    stop.set()
            stop.wait(0.5)
    finally:
        for _name, process in reversed(children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(children):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            say(f"stopped {name}")
        if own_broker is not None:
            own_broker.stop()
            say("stopped the Kafka broker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
