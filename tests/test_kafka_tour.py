"""docs/kafka-tour.md is run as written: every `$` command, in order, on a three-node cluster and a demo of
this test's own (its ports swapped in), with what the tour says the reader sees checked after each step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.cluster import LocalCluster
from broker.settings import BrokerSettings
from tests.conftest import ARTIFACTS, ROOT, SHARED_TOPIC_SETTINGS, free_cluster_port, free_port
from tests.stack import kafka_panel, panel_shows_down, panel_shows_whole
from tests.test_dashboard import wait_until

TOUR = ROOT / "docs" / "kafka-tour.md"
DEMO = "make demo NODES=3"


def tour_commands() -> list[str]:
    """The `$` lines of the tour's console blocks, in order."""
    blocks = re.findall(r"```console\n(.*?)```", TOUR.read_text(), re.S)
    return [line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith("$ ")]


class Demo:
    """`make demo NODES=3` in the background, stopped with Ctrl-C (SIGINT to its process group)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                DEMO.split(), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


@pytest.fixture
def tour_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], int, int]]:
    cluster_port, dashboard_port = free_cluster_port(3), free_port()
    cluster_dir = tmp_path / "cluster"
    env = {
        # The tour runs as in a user's shell: the default topics of a cluster of its own.
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "BROKER_NODES", "MAKEFLAGS", *SHARED_TOPIC_SETTINGS)
        },
        "BROKER_CLUSTER_PORT": str(cluster_port),
        "BROKER_CLUSTER_DIR": str(cluster_dir),
        "DASHBOARD_PORT": str(dashboard_port),
    }
    yield env, cluster_port, dashboard_port
    # Whatever happened, no node of this cluster outlives the test (and the session's broker is left alone:
    # `python -m broker stop` would stop it too).
    LocalCluster(BrokerSettings(cluster_port=cluster_port, cluster_dir=cluster_dir)).stop()


@pytest.mark.cluster
def test_every_command_of_the_kafka_tour_runs_and_the_page_shows_what_the_tour_says(tour_env):
    env, cluster_port, dashboard_port = tour_env
    commands = tour_commands()
    assert commands[0] == DEMO, "the tour starts the demo first"
    base = f"http://127.0.0.1:{dashboard_port}"
    ARTIFACTS.mkdir(exist_ok=True)
    demo = Demo(env, ARTIFACTS / "kafka-tour-demo.log")
    ran = []
    try:
        wait_until(lambda: f"open {base}" in demo.output() or demo.process.poll() is not None, 120, "the demo's URL")
        assert demo.process.poll() is None, f"the demo stopped:\n{demo.output()[-3000:]}"
        wait_until(
            lambda: all(topic["partitions"] for topic in kafka_panel(base)["topics"]),
            60,
            "the Kafka view shows the partitions of every topic the demo writes",
        )
        for command in commands[1:]:
            line = command.replace("127.0.0.1:5000", f"127.0.0.1:{dashboard_port}").replace(
                "127.0.0.1:9192", f"127.0.0.1:{cluster_port}"
            )
            result = subprocess.run(line, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, f"`{command}` failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            ran.append(command)
            check_what_the_tour_says(command, result.stdout, base, cluster_port)
    finally:
        code = demo.stop()
    # make itself dies of the interrupt once its recipe is done (as in a terminal: "make: *** Interrupt").
    assert code in (0, -signal.SIGINT), f"Ctrl-C stopped the demo with {code}:\n{demo.output()[-3000:]}"
    assert "[demo] stopped Kafka" in demo.output(), demo.output()[-3000:]
    assert len(ran) == len(commands) - 1


def check_what_the_tour_says(command: str, output: str, base: str, cluster_port: int) -> None:
    if command.endswith("broker status"):
        nodes = ",".join(f"127.0.0.1:{cluster_port + 100 * n}" for n in range(3))
        assert f"bootstrap: {nodes}" in output and output.count("a live broker") == 3, output
    elif command.endswith("kill --node 2"):
        wait_until(lambda: panel_shows_down(base, 2), 20, "the Kafka view shows broker 2 down, out of every ISR")
    elif command.endswith("start --node 2"):
        wait_until(lambda: panel_shows_whole(base), 30, "the Kafka view shows every broker up and every ISR full")
    elif "topics describe" in command:
        assert "driver-location" in output and "isr" in output.lower(), output
    elif "groups describe" in command:
        assert "matcher" in output, output
    elif "transactions list" in command:
        assert "matcher" in output or "transactional" in output.lower(), output
    elif command.startswith("curl") and "/api/kafka" in command:
        assert '"brokers"' in output and '"isr"' in output, output
    else:
        raise AssertionError(f"the tour has a command this test does not know how to check: {command}")
