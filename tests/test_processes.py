"""One way to build a process: settings, flags, errors at the boundary, and processes that meet each other."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import time

import pytest

from broker.settings import BrokerSettings
from dashboard.settings import DashboardSettings
from fleet.errors import FleetError
from fleet.settings import Setting, SettingError
from matcher.settings import MatcherSettings
from simulator.settings import SimulatorSettings
from tests.conftest import PYTHON, ROOT, free_port
from zones.settings import ZonesSettings

PROCESSES = {
    "dashboard": DashboardSettings,
    "simulator": SimulatorSettings,
    "matcher": MatcherSettings,
    "zones": ZonesSettings,
    "broker": BrokerSettings,
}


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("process", PROCESSES)
def test_help_names_every_setting_with_its_environment_variable_and_default(process):
    result = run("-m", process, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for field in dataclasses.fields(PROCESSES[process]):
        setting = field.metadata.get("setting")
        if setting is not None:
            assert setting.name in text, f"{process} --help does not name {setting.name}"


@pytest.mark.parametrize(
    ("process", "flag", "env"),
    [
        ("dashboard", "--port=0", {"DASHBOARD_TICK_MS": "fast"}),
        ("simulator", "--drivers=-3", {"SIMULATOR_INTERVAL": "nan"}),
        ("matcher", "--max-wait-s=never", {"MATCHER_PARTITIONS": "0"}),
        ("zones", "--partitions=0", {"ZONES_DEAD_LETTER": "sometimes"}),
        ("broker", "--port=70000", {"BROKER_HEAP": "lots"}),
    ],
)
def test_a_bad_flag_or_a_bad_setting_is_one_line_and_exit_2(process, flag, env):
    args = [] if process != "broker" else ["status"]
    for result in (run("-m", process, flag, *args), run("-m", process, *args, env=env)):
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"python -m {process}: error: "), (
            result.stderr
        )
        assert "Traceback" not in result.stderr


def test_zero_seconds_of_read_back_is_none_as_documented():
    assert DashboardSettings.from_env({"DASHBOARD_READBACK_S": "0.00"}).readback_s == 0.0


def test_a_setting_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        Setting("DASHBOARD_PORT", 1, "again")


def test_every_error_of_ours_has_one_base_and_an_exit_code():
    assert issubclass(SettingError, FleetError) and SettingError.exit_code == 2
    from broker.local import BrokerError
    from matcher.service import FatalError

    assert issubclass(BrokerError, FleetError) and issubclass(FatalError, FleetError)


def test_a_second_matcher_with_a_live_matchers_instance_id_refuses_instead_of_fencing_it(
    kafka_bootstrap, make_topic, processes
):
    topics = [
        "--driver-topic",
        make_topic("drv"),
        "--request-topic",
        make_topic("req"),
        "--match-topic",
        make_topic("match"),
    ]
    group = f"twice-{time.time_ns()}"
    args = [
        "-m",
        "matcher",
        "--bootstrap-servers",
        kafka_bootstrap,
        *topics,
        "--group-id",
        group,
        "--instance-id",
        "m1",
    ]
    first = processes([PYTHON, *args], env={"PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while time.monotonic() < deadline and not any("matching partitions" in line for line in lines):
        lines.append(first.stderr.readline())
    assert any("matching partitions" in line for line in lines), lines[-5:]

    second = run(*args, timeout=30)
    assert second.returncode == 1
    assert re.fullmatch(
        r"python -m matcher: error: pid \d+ on this host already runs as matcher '.*\.m1'\n", second.stderr
    )
    assert first.poll() is None, "the first matcher is not fenced"


def test_a_demo_refuses_to_start_when_the_dashboard_port_is_taken_and_touches_nothing():
    with socket.socket() as squatter:
        port = free_port()
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run("tools/demo.py", env={"DASHBOARD_PORT": str(port), "KAFKA_BOOTSTRAP_SERVERS": ""})
    assert result.returncode == 1
    assert f"[demo] not starting: port {port} is taken" in result.stdout
    assert "Kafka broker" not in result.stdout, "nothing started, nothing stopped"
