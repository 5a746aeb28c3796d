"""`python -m broker`: start is idempotent, stop frees the ports, errors are one clear line."""

import os
import socket
import subprocess

import pytest

from broker import local
from broker.cluster import LocalCluster, node_ports
from broker.local import BrokerError, BrokerSettings, LocalBroker, port_in_use
from bus.clients import replication_for
from tests.conftest import PYTHON, ROOT, free_port


def run_broker_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "broker", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def node_env(tmp_path):
    """Environment for a broker of the test's own, on free ports, in a temporary folder."""
    env = {
        "BROKER_PORT": str(free_port()),
        "BROKER_CONTROLLER_PORT": str(free_port()),
        "BROKER_NODE_DIR": str(tmp_path / "node"),
    }
    yield env
    run_broker_cli("stop", env=env)


def test_start_twice_then_stop_frees_the_ports(node_env):
    first = run_broker_cli("start", env=node_env)
    assert first.returncode == 0, first.stderr
    assert "ready at 127.0.0.1:" in first.stdout and " s (pid " in first.stdout

    second = run_broker_cli("start", env=node_env)
    assert second.returncode == 0
    assert "already running" in second.stdout

    status = run_broker_cli("status", env=node_env)
    assert status.returncode == 0 and "answers metadata requests" in status.stdout

    stop = run_broker_cli("stop", env=node_env)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not port_in_use(int(node_env["BROKER_PORT"]))
    assert not port_in_use(int(node_env["BROKER_CONTROLLER_PORT"]))

    after = run_broker_cli("status", env=node_env)
    assert after.returncode == 3 and "not running" in after.stdout


def test_port_taken_by_something_else_is_one_line(node_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(node_env["BROKER_PORT"])))
        squatter.listen()
        result = run_broker_cli("start", env=node_env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"port {node_env['BROKER_PORT']} is taken by another process" in result.stderr


def test_storage_formatted_for_another_cluster_is_refused(tmp_path):
    broker = LocalBroker(BrokerSettings(port=free_port(), controller_port=free_port(), node_dir=tmp_path))
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("cluster.id=SomeOtherCluster000000\nnode.id=1\nversion=1\n")
    broker.cluster_id_file.write_text("ThisClusterId000000000\n")
    with pytest.raises(BrokerError, match="formatted for cluster SomeOtherCluster000000.*python -m broker reset"):
        broker.start()


def test_missing_java_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="Java not found: install a JDK 17 or newer"):
        local.find_java(None)


def test_old_java_is_refused(monkeypatch, tmp_path):
    fake_java = tmp_path / "bin" / "java"
    fake_java.parent.mkdir()
    fake_java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake_java.chmod(0o755)
    with pytest.raises(BrokerError, match="Java 11 found .* needs Java 17"):
        local.find_java(tmp_path)


def test_missing_maven_without_cached_jars(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "LIBS_DIR", tmp_path / "libs")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="Maven is missing and no Kafka jars are cached"):
        local.fetch_jars()


def test_cached_jars_are_not_fetched_again(monkeypatch, tmp_path):
    local.fetch_jars()
    monkeypatch.setenv("PATH", str(tmp_path))  # no Maven now: the cached jars must do
    assert local.fetch_jars() is False


def test_kafka_home_without_jars_is_refused(tmp_path):
    broker = LocalBroker(BrokerSettings(kafka_home=tmp_path, node_dir=tmp_path / "node"))
    with pytest.raises(BrokerError, match="KAFKA_HOME=.* has no libs/kafka_2.13"):
        broker.libs_dir()


def test_cluster_ids_look_like_kafkas():
    ids = {local.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_unknown_command_is_a_usage_error():
    result = run_broker_cli("launch")
    assert result.returncode == 2
    assert "invalid choice: 'launch'" in result.stderr
    assert "Traceback" not in result.stderr


# ---- the local cluster (its faults are in tests/test_cluster_faults.py, its tour in tests/test_kafka_tour.py)


def test_node_n_of_the_cluster_listens_100_ports_above_node_1_and_its_controller_one_above_that():
    assert [node_ports(9192, n) for n in (1, 2, 3)] == [(9192, 9193), (9292, 9293), (9392, 9393)]


def test_topics_get_three_replicas_and_need_two_in_sync_once_the_cluster_has_three_brokers():
    assert [replication_for(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]


def test_kill_without_a_node_and_too_many_nodes_are_one_line_errors():
    for args in (["kill"], ["start", "--nodes", "9"], ["start", "--node"]):
        result = run_broker_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr


def test_starting_one_node_of_a_cluster_never_made_says_how_to_make_it(tmp_path):
    result = run_broker_cli("start", "--node", "2", env={"BROKER_CLUSTER_DIR": str(tmp_path / "none")})
    assert result.returncode == 1
    assert "there is no local cluster in" in result.stderr and "run `python -m broker start --nodes 3`" in result.stderr


def test_a_cluster_made_with_three_nodes_is_not_started_with_five(tmp_path):
    (tmp_path / "nodes").write_text("3\n")
    cluster = LocalCluster(BrokerSettings(nodes=5, cluster_dir=tmp_path), size=5)
    with pytest.raises(BrokerError, match="was made with 3 nodes, not 5"):
        cluster.start()
