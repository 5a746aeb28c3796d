"""`python -m dashboard.replicas`: several dashboards behind Debian's nginx, seen by Socket.IO clients.

The clients connect through nginx from loopback addresses of their own (``bench/crowd.py``), since nginx
is sticky by client address; the ``X-Upstream`` header nginx adds names the dashboard that answered.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.common import free_ports_in_a_row
from bench.crowd import bound_client, source_address, upstream_of
from dashboard import nginx
from dashboard.replicas import dashboard_env
from dashboard.replicas_settings import ReplicasSettings
from fleet.frames import FleetView
from tests.conftest import PYTHON, fleet_topics, free_port
from tests.test_dashboard import fleet_fixes, metric, producer, send_fixes, wait_until

NGINX = ReplicasSettings().nginx
DRIVERS = 40


# ---- the generated configuration (no nginx process)


def test_the_config_is_sticky_passes_websockets_on_and_keeps_every_path_in_its_prefix(tmp_path: Path) -> None:
    text = nginx.render(("127.0.0.1", 8080), [("127.0.0.1", 5001), ("127.0.0.1", 5002)], tmp_path)
    upstream = re.search(r"upstream dashboards \{(.*?)\}", text, re.S)
    assert upstream is not None
    assert "ip_hash;" in upstream.group(1)
    assert re.findall(r"server (\S+);", upstream.group(1)) == ["127.0.0.1:5001", "127.0.0.1:5002"]
    assert "listen 127.0.0.1:8080;" in text
    for line in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;", "proxy_buffering off;"):
        assert line in text
    assert "proxy_set_header Connection $connection_upgrade;" in text and "default upgrade;" in text
    assert f"proxy_read_timeout {nginx.READ_TIMEOUT_S}s;" in text and nginx.READ_TIMEOUT_S > 25 + 20, "ping + timeout"
    paths = re.findall(r"^\s*(?:pid|access_log|\w+_temp_path) (\S+?)[ ;]", text, re.M)
    assert len(paths) == 2 + len(nginx.TEMP_DIRS)
    assert all(Path(p).is_relative_to(tmp_path) for p in paths), paths


def test_an_ipv6_address_is_written_in_brackets() -> None:
    text = nginx.render(("::1", 8080), [("::1", 5001)], Path("/srv/x"))
    assert "listen [::1]:8080;" in text and "server [::1]:5001;" in text


def test_nginx_itself_accepts_the_generated_config(tmp_path: Path) -> None:
    for name in nginx.TEMP_DIRS:
        (tmp_path / "tmp" / name).mkdir(parents=True)
    config = tmp_path / "nginx.conf"
    config.write_text(nginx.render(("127.0.0.1", free_port()), [("127.0.0.1", 5001), ("127.0.0.1", 5002)], tmp_path))
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr


def test_only_the_first_dashboard_dead_letters_and_each_has_its_loopback_port() -> None:
    base = {"DRIVER_TOPIC": "t", "DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_DEAD_LETTER": "true"}
    first, second = dashboard_env(base, 0, 5001), dashboard_env(base, 1, 5002)
    assert (first["DASHBOARD_HOST"], first["DASHBOARD_PORT"], first["DASHBOARD_DEAD_LETTER"]) == (
        "127.0.0.1",
        "5001",
        "true",
    )
    assert (second["DASHBOARD_PORT"], second["DASHBOARD_DEAD_LETTER"]) == ("5002", "false")
    assert second["DRIVER_TOPIC"] == "t"


# ---- the command line


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "dashboard.replicas", *args], capture_output=True, text=True, timeout=30, env=env
    )


@pytest.mark.parametrize("flag", ["--replicas=0", "--port=70000", "--replicas=65", "--bogus"])
def test_a_bad_flag_is_one_line_and_exit_2(flag: str) -> None:
    result = run(flag)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("python -m dashboard.replicas: error: ")


def test_without_nginx_it_says_which_package_to_install_in_one_line() -> None:
    result = run("--nginx", "/nonexistent/nginx", "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "sudo apt-get install nginx" in result.stderr


def test_nginx_on_a_dashboards_port_is_refused_before_anything_starts() -> None:
    first = free_ports_in_a_row(2)
    result = run("--port", str(first + 1), "--first-dashboard-port", str(first))
    assert result.returncode == 2 and "is also a dashboard's" in result.stderr


# ---- the running launcher: two dashboards behind nginx, against a real broker


class Viewer:
    """A Socket.IO client from its own loopback address that keeps the fleet as the page does."""

    def __init__(self, url: str, index: int, transport: str) -> None:
        self.source = source_address(index)
        self.transport = transport
        self.upstream = upstream_of(url, self.source)
        self.view = FleetView()
        self.lock = threading.Lock()
        self.disconnected = False
        self.sio = bound_client(url, self.source, transport)
        self.sio.on("snapshot", self._locked(self.view.on_snapshot))
        self.sio.on("positions", self._locked(self.view.on_positions))
        self.sio.on("disconnect", self._gone)
        self.sio.connect(url, transports=[transport], wait_timeout=10)

    def _locked(self, handler: Any) -> Any:
        def locked(payload: Any) -> None:
            with self.lock:
                handler(payload)

        return locked

    def _gone(self, *_args: Any) -> None:
        self.disconnected = True

    def latitudes(self) -> dict[str, float]:
        with self.lock:
            return {k: r.latitude for k, r in self.view.by_driver_id().items()}


@pytest.fixture
def replicas(kafka_bootstrap, kafka_admin, processes, tmp_path):
    """``python -m dashboard.replicas`` with 2 dashboards on free ports, against topics of its own."""
    with fleet_topics(kafka_admin, "replicas") as topics:
        port, first = free_port(), free_ports_in_a_row(2)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DRIVER_TOPIC": topics["drivers"],
            "RIDE_REQUEST_TOPIC": topics["requests"],
            "RIDE_MATCH_TOPIC": topics["matches"],
            "TILE_URL": "none",
            "PYTHONUNBUFFERED": "1",
        }
        out, log = tmp_path / "stdout", tmp_path / "stderr"
        with out.open("w") as stdout, log.open("w") as stderr:
            args = [PYTHON, "-m", "dashboard.replicas", "--replicas", "2", "--port", str(port)]
            args += ["--first-dashboard-port", str(first), "--work-dir", str(tmp_path / "nginx")]
            launcher = processes(args, env=env, stdout=stdout, stderr=stderr)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: url in out.read_text() or launcher.poll() is not None, 30, "the launcher prints the URL")
        assert launcher.poll() is None, log.read_text()
        yield {"url": url, "launcher": launcher, "topic": topics["drivers"], "log": log, "work": tmp_path / "nginx"}


def test_viewers_on_both_dashboards_get_every_driver_over_websocket_and_sticky_polling(kafka_bootstrap, replicas):
    url = replicas["url"]
    # Addresses until each dashboard has a WebSocket and a polling viewer (ip_hash decides, deterministically).
    chosen: dict[tuple[str, str], int] = {}
    for index in range(64):
        upstream = upstream_of(url, source_address(index))
        for transport in ("websocket", "polling"):
            if (upstream, transport) not in chosen and index not in chosen.values():
                chosen[(upstream, transport)] = index
        if len(chosen) == 4:
            break
    assert len({u for u, _ in chosen}) == 2, f"64 addresses all went to {set(chosen)}"
    viewers = [Viewer(url, index, transport) for (_, transport), index in chosen.items()]
    try:
        kafka = producer(kafka_bootstrap)
        fixes = fleet_fixes(DRIVERS, 2, time.time() - 2)
        send_fixes(kafka, replicas["topic"], fixes)
        latest = {f.driver_id: round(f.latitude, 6) for f in fixes[-DRIVERS:]}
        for viewer in viewers:
            wait_until(lambda v=viewer: v.latitudes() == pytest.approx(latest), 10, f"{viewer.source} has every driver")

        # Each viewer's session is on the dashboard nginx named for its address, and each dashboard has two.
        for upstream in {v.upstream for v in viewers}:
            assert metric(f"http://{upstream}", "dashboard_connected_clients") == 2
        # Long polling stays on its process for many requests: a later round still arrives, nobody is dropped.
        time.sleep(3)
        later = fleet_fixes(DRIVERS, 3, time.time() - 3)[-DRIVERS:]
        send_fixes(kafka, replicas["topic"], later)
        newest = {f.driver_id: round(f.latitude, 6) for f in later}
        for viewer in viewers:
            wait_until(
                lambda v=viewer: v.latitudes() == pytest.approx(newest), 10, f"{viewer.source} got the next fixes"
            )
            assert not viewer.disconnected
    finally:
        for viewer in viewers:
            viewer.sio.disconnect()
    access = (replicas["work"] / nginx.ACCESS_LOG).read_text().splitlines()
    assert not [line for line in access if " 400 " in line], "no request reached a process without its session"
    for viewer in viewers:
        mine = [line for line in access if line.startswith(viewer.source + " ") and "/socket.io/" in line]
        assert {line.rpartition("upstream=")[2].split()[0] for line in mine} == {viewer.upstream}, mine
    polling = [v for v in viewers if v.transport == "polling"]
    assert all(sum(v.source in line for line in access) >= 5 for v in polling), "each poller made many requests"


def test_sigterm_stops_nginx_and_every_dashboard(replicas):
    launcher: subprocess.Popen[str] = replicas["launcher"]
    children = psutil.Process(launcher.pid).children(recursive=True)
    assert sum("nginx" in c.name() for c in children) >= 2 and sum(c.name().startswith("python") for c in children) == 2
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {alive}"
    assert "stopped nginx" in replicas["log"].read_text()


def test_a_dashboard_that_exits_is_named_and_everything_stops_with_exit_1(replicas):
    launcher: subprocess.Popen[str] = replicas["launcher"]
    children = psutil.Process(launcher.pid).children(recursive=True)
    dashboard = next(c for c in children if c.name().startswith("python"))
    dashboard.kill()
    assert launcher.wait(timeout=30) == 1
    log = replicas["log"].read_text()
    assert re.search(rf"dashboard \d \(pid {dashboard.pid}\) exited with code -9; stopping the others", log), log
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {alive}"
