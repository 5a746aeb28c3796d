"""`python -m dashboard.replicas`: several dashboard processes behind nginx, one address for many viewers.

Each dashboard reads the whole topic by itself (manual assignment, no consumer group), so every
process holds the whole fleet and viewers scale by adding processes: this launcher starts N
``python -m dashboard`` on consecutive loopback ports and Debian's nginx in front of them with the
configuration of ``dashboard/nginx.py``, waits until all answer ``/healthz``, prints the address,
and stops everything on Ctrl-C or SIGTERM. It restarts nothing: when a child exits, it says which one
and with what code, stops the others and exits with 1, so a supervisor (systemd, a terminal) sees it.
For production, docs/deployment.md runs the same pieces under systemd instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from broker.local import port_in_use
from bus.runtime import claim_instance, install_shutdown, run_cli, settings_parser, setup_logging
from dashboard import nginx
from dashboard.replicas_settings import ReplicasSettings
from dashboard.settings import DEAD_LETTER, HOST, PORT
from fleet.errors import CannotListen, FleetError, UsageError

log = logging.getLogger(__name__)
PROG = "python -m dashboard.replicas"
LOOPBACK = "127.0.0.1"
# A dashboard gives its requests 5 s after SIGTERM (dashboard/cli.py); past this it is killed.
STOP_TIMEOUT_S = 15.0
POLL_S = 0.5
# While something is not healthy yet, say which every this many seconds (not every poll).
WAITING_NOTE_S = 10.0


class NginxMissing(FleetError):
    """The nginx binary is not there."""


@dataclass
class Member:
    """One child of the launcher: a dashboard or nginx."""

    name: str
    process: subprocess.Popen[bytes]
    health_url: str
    healthy: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid


def main_parser() -> argparse.ArgumentParser:
    return settings_parser(
        ReplicasSettings,
        PROG,
        "Run several dashboards behind nginx on one address: viewers scale with processes.",
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(main_parser(), ReplicasSettings, serve, argv)


def dashboard_env(base: Mapping[str, str], index: int, port: int) -> dict[str, str]:
    """The environment of dashboard ``index`` (from 0): the launcher's own, on a loopback port of its own.

    Only the first one copies refused messages to the dead-letter topic, or each refused message would
    be dead-lettered once per dashboard (DASHBOARD_DEAD_LETTER: "turn off on all but one instance").
    """
    env = {**base, HOST.name: LOOPBACK, PORT.name: str(port), "PYTHONUNBUFFERED": "1"}
    if index > 0:
        env[DEAD_LETTER.name] = "false"
    return env


def find_nginx(path: str) -> str:
    """The nginx binary to run, or :class:`NginxMissing` saying how to install it."""
    found = shutil.which(path)
    if found is None:
        raise NginxMissing(
            f"nginx is not installed ({path} not found); install it with `sudo apt-get install nginx`, "
            "or give its path with --nginx"
        )
    return found


def check_ports(settings: ReplicasSettings) -> None:
    """Refuse ports that overlap or are taken before anything starts, naming the flag that moves them."""
    ports = settings.dashboard_ports
    if ports[-1] > 65535:
        raise UsageError(f"{settings.dashboards} dashboards from port {ports[0]} go past 65535")
    if settings.port in ports:
        raise UsageError(f"nginx's port {settings.port} is also a dashboard's ({ports[0]}-{ports[-1]})")
    if port_in_use(settings.port, settings.host):
        raise CannotListen(f"port {settings.port} is taken on {settings.host}; choose another with --port")
    for port in ports:
        if port_in_use(port, LOOPBACK):
            raise CannotListen(f"dashboard port {port} is taken; choose other ports with --first-dashboard-port")


def health_status(url: str) -> int | None:
    """The HTTP status ``url`` answers with, or None when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@contextmanager
def work_dir(given: str) -> Iterator[Path]:
    """The folder nginx runs in: the one given (kept), or a temporary one removed at the end."""
    if given:
        path = Path(given).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="dashboard-replicas-"))
    # nginx started as root runs its workers as nobody, and they must reach the temp folders.
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_config(prefix: Path, settings: ReplicasSettings) -> Path:
    for name in nginx.TEMP_DIRS:
        (prefix / "tmp" / name).mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    dashboards = [(LOOPBACK, port) for port in settings.dashboard_ports]
    config.write_text(nginx.render((settings.host, settings.port), dashboards, prefix))
    return config


def start(name: str, args: list[str], env: Mapping[str, str], health_url: str) -> Member:
    # A session of its own: Ctrl-C reaches only this launcher, which stops the children once, in order
    # (a dashboard that got both the terminal's SIGINT and our SIGTERM would take the second as "insist").
    process = subprocess.Popen(args, env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True)
    return Member(name, process, health_url)


def serve(settings: ReplicasSettings, _args: argparse.Namespace) -> int:
    """Start the dashboards, then nginx in front of them; watch them until a signal or a child's exit; stop them."""
    setup_logging(settings.log_level)
    binary = find_nginx(settings.nginx)
    check_ports(settings)
    lock = claim_instance("dashboard-replicas", nginx.address(settings.host, settings.port))
    stop = install_shutdown(lambda name: log.info("%s received: stopping nginx and the dashboards", name))
    members: list[Member] = []
    try:
        with work_dir(settings.work_dir) as prefix:
            config = write_config(prefix, settings)
            try:
                return run_members(members, settings, binary, prefix, config, stop)
            finally:
                stop_all(members)
    finally:
        lock.close()


def run_members(
    members: list[Member], settings: ReplicasSettings, binary: str, prefix: Path, config: Path, stop: threading.Event
) -> int:
    ports = settings.dashboard_ports
    for index, port in enumerate(ports):
        url = f"http://{LOOPBACK}:{port}"
        env = dashboard_env(os.environ, index, port)
        members.append(start(f"dashboard {index + 1}", [sys.executable, "-m", "dashboard"], env, url + "/healthz"))
        log.info("started dashboard %d of %d (pid %d) on %s", index + 1, len(ports), members[-1].pid, url)
    # nginx only once every dashboard answers: earlier, each refused connection would mark that upstream
    # down for 10 s (nginx's fail_timeout) and fill its error log.
    code = watch(members, stop, lambda: all(health_status(m.health_url) is not None for m in members))
    if code is not None:
        return code
    command = [binary, "-p", str(prefix), "-c", str(config), "-e", "stderr", "-g", "daemon off;"]
    members.append(start("nginx", command, os.environ, settings.url + "/healthz"))
    log.info("started nginx (pid %d) on %s, config %s", members[-1].pid, settings.url, config)
    code = watch(members, stop, HealthWatch(members))
    if code is not None:
        return code
    log.info("all %d dashboards answer /healthz behind nginx; open %s", len(ports), settings.url)
    print(settings.url, flush=True)
    return watch(members, stop, lambda: False) or 0


def watch(members: list[Member], stop: threading.Event, done: Callable[[], bool]) -> int | None:
    """Poll until ``done()`` (None), a signal (0) or the exit of a child (1, after saying which and how)."""
    while not stop.wait(POLL_S):
        for member in members:
            code = member.process.poll()
            if code is not None:
                log.error("%s (pid %d) exited with code %d; stopping the others", member.name, member.pid, code)
                return 1
        if done():
            return None
    return 0


class HealthWatch:
    """Says once when each child answers /healthz with 200, and every few seconds which ones do not yet."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.last_note = time.monotonic()

    def __call__(self) -> bool:
        for member in self.members:
            if not member.healthy and health_status(member.health_url) == 200:
                member.healthy = True
                log.info("%s (pid %d) is healthy at %s", member.name, member.pid, member.health_url)
        waiting = [m.name for m in self.members if not m.healthy]
        if waiting and time.monotonic() - self.last_note >= WAITING_NOTE_S:
            log.info("waiting for %s to answer /healthz with 200 (see their log lines)", ", ".join(waiting))
            self.last_note = time.monotonic()
        return not waiting


def stop_all(members: list[Member]) -> None:
    """SIGTERM to every child still running, nginx first (no new requests), then wait for each; kill the stuck."""
    for member in reversed(members):
        if member.process.poll() is None:
            member.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for member in reversed(members):
        try:
            code = member.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            member.process.kill()
            code = member.process.wait()
            log.warning("%s (pid %d) did not stop within %.0f s: killed", member.name, member.pid, STOP_TIMEOUT_S)
        log.info("stopped %s (pid %d, exit code %d)", member.name, member.pid, code)


if __name__ == "__main__":
    raise SystemExit(main())
