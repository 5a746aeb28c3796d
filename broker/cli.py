"""`python -m broker start | stop | status | logs | kill | fetch | reset`, for one node or a local cluster."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from broker.cluster import LocalCluster, admin_client, partition_replicas
from broker.local import LIBS_DIR, BrokerError, LocalBroker, fetch_jars, kafka_version
from broker.settings import BROKER_NODES, BrokerSettings
from bus.runtime import add_setting_flag, run_cli, settings_parser, setup_logging

PROG = "python -m broker"
NOT_RUNNING = 3  # like `systemctl status`: scripts can test for "not running"


def main_parser() -> argparse.ArgumentParser:
    parser = settings_parser(
        BrokerSettings,
        PROG,
        "Run Apache Kafka (KRaft) from Maven jars for the demo and tests: one node, or a local cluster "
        "(start --nodes 3). Without --node, stop/status/logs act on everything that was started.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("start", help="start the broker (or cluster) and wait until it answers")
    add_setting_flag(start, "--nodes", "nodes", BROKER_NODES, "N")
    add_node_flag(start, "start only node N of the local cluster (made before with --nodes)")
    add_node_flag(commands.add_parser("stop", help="stop cleanly and free the ports"), "stop only node N")
    add_node_flag(commands.add_parser("status", help="what runs, where, and the bootstrap list"), "only node N")
    logs = commands.add_parser("logs", help="print the end of the broker's log")
    logs.add_argument("-n", "--lines", type=int, default=40, help="how many lines (default: %(default)s)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    add_node_flag(logs, "the log of node N of the local cluster")
    kill = commands.add_parser("kill", help="SIGKILL a node of the local cluster, as a crash would")
    add_node_flag(kill, "the node to kill", required=True)
    commands.add_parser("fetch", help="download Kafka's jars with Maven (start does this when needed)")
    commands.add_parser("reset", help="delete the data and cluster ids of the broker and the cluster (stopped)")
    return parser


def add_node_flag(parser: argparse.ArgumentParser, help_text: str, required: bool = False) -> None:
    parser.add_argument("--node", type=int, metavar="N", required=required, help=help_text)


def main(argv: list[str] | None = None) -> int:
    return run_cli(main_parser(), BrokerSettings, command, argv)


def command(settings: BrokerSettings, args: argparse.Namespace) -> int:
    setup_logging("INFO")
    single = LocalBroker(settings)
    # `start --nodes N` (or BROKER_NODES) makes a cluster; every other command finds the one made before.
    making = args.command == "start" and args.node is None and settings.nodes > 1
    cluster = LocalCluster(settings, size=settings.nodes if making else None)
    return COMMANDS[args.command](single, cluster, args)


def start(single: LocalBroker, cluster: LocalCluster, args: argparse.Namespace) -> int:
    if args.node is not None:
        result = cluster.start_node(args.node)
        node = cluster.node(args.node)
        state = "already running" if result.already_running else f"started in {result.seconds:.1f} s"
        print(f"node {args.node} {state} at {node.bootstrap} (pid {result.pid}); bootstrap: {cluster.bootstrap}")
        return 0
    return start_cluster(cluster) if cluster.config.nodes > 1 else start_single(single)


def start_single(broker: LocalBroker) -> int:
    result = broker.start()
    if result.already_running:
        print(f"Kafka broker already running at {broker.bootstrap} (pid {result.pid})")
        return 0
    for note in result.notes:
        print(note)
    print(
        f"Kafka {kafka_version()} broker ready at {broker.bootstrap} in {result.seconds:.1f} s "
        f"(pid {result.pid}, data in {broker.data_dir})"
    )
    return 0


def start_cluster(cluster: LocalCluster) -> int:
    result = cluster.start()
    for note in result.notes:
        print(note)
    if result.already_running:
        print(f"Kafka cluster of {cluster.size} nodes already running")
    else:
        print(
            f"Kafka {kafka_version()} cluster of {cluster.size} nodes ready in {result.seconds:.1f} s "
            f"(data in {cluster.root})"
        )
    print(f"bootstrap: {cluster.bootstrap}")
    return 0


def stop(single: LocalBroker, cluster: LocalCluster, args: argparse.Namespace) -> int:
    if args.node is not None:
        say_stopped(f"node {args.node}", cluster.node(args.node), cluster.node(args.node).stop())
        return 0
    stopped = single.stop()
    if stopped is not None or not cluster.exists():
        say_stopped("Kafka broker", single, stopped)
    if cluster.exists():
        for n, seconds in cluster.stop().items():
            say_stopped(f"cluster node {n}", cluster.nodes[n], seconds)
    return 0


def say_stopped(what: str, broker: LocalBroker, seconds: float | None) -> None:
    if seconds is None:
        print(f"{what} is not running")
    else:
        ports = f"{broker.config.port} and {broker.config.controller_port}"
        print(f"{what} stopped in {seconds:.1f} s; ports {ports} are free")


def status(single: LocalBroker, cluster: LocalCluster, args: argparse.Namespace) -> int:
    if args.node is not None:
        return NOT_RUNNING if not node_status(args.node, cluster.node(args.node)) else 0
    running = False
    if single.running_pid() is not None or not cluster.exists():
        running |= single_status(single)
    if cluster.exists():
        running |= cluster_status(cluster)
    return 0 if running else NOT_RUNNING


def single_status(broker: LocalBroker) -> bool:
    pid = broker.running_pid()
    if pid is None:
        print(f"Kafka broker is not running (data in {broker.data_dir})")
        return False
    answering = "answers metadata requests" if broker.answers_metadata() else "does NOT answer yet"
    print(f"Kafka broker running at {broker.bootstrap} (pid {pid}), {answering}; data in {broker.data_dir}")
    return True


def cluster_status(cluster: LocalCluster) -> bool:
    print(f"Kafka cluster of {cluster.size} nodes (data in {cluster.root}):")
    up = cluster.brokers_up()
    running = [node_status(n, node, up.get(n)) for n, node in cluster.nodes.items()]
    if any(running):
        print(f"  partitions missing an in-sync replica: {under_replicated_count(cluster.bootstrap)}")
        print(f"bootstrap: {cluster.bootstrap}")
        print(f"  export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}")
    return any(running)


def node_status(node_id: int, node: LocalBroker, live: bool | None = None) -> bool:
    pid = node.running_pid()
    if pid is None:
        print(f"  node {node_id}: not running (port {node.config.port})")
        return False
    if live is None:
        broker = "not answering"
    else:
        broker = "a live broker" if live else "registered but fenced (catching up or shutting down)"
    print(f"  node {node_id}: running at {node.bootstrap} (pid {pid}), {broker}; data in {node.data_dir}")
    return True


def under_replicated_count(bootstrap: str) -> str:
    try:
        with admin_client(bootstrap, timeout_s=3.0) as admin:
            return str(sum(p.under_replicated for p in partition_replicas(admin)))
    except Exception as e:  # noqa: BLE001 - status reports whatever went wrong instead of failing
        return f"unknown ({type(e).__name__})"


def logs(single: LocalBroker, cluster: LocalCluster, args: argparse.Namespace) -> int:
    if args.node is not None:
        return print_log(cluster.node(args.node).log_file, args)
    if cluster.exists() and not single.log_file.exists():
        if args.follow:
            raise BrokerError("--follow needs --node N on a cluster (one log at a time)")
        found = [print_log(node.log_file, args, header=f"== node {n} ==") for n, node in cluster.nodes.items()]
        return max(found)
    return print_log(single.log_file, args)


def print_log(path: Path, args: argparse.Namespace, header: str | None = None) -> int:
    if not path.exists():
        print(f"no log yet at {path}")
        return 1
    if header:
        print(header)
    with path.open(errors="replace") as f:
        lines = f.readlines()
        sys.stdout.writelines(lines[-args.lines :] if args.lines > 0 else [])
        while args.follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.3)
    return 0


def kill(_single: LocalBroker, cluster: LocalCluster, args: argparse.Namespace) -> int:
    node = cluster.node(args.node)
    pid = node.running_pid()
    if pid is None:
        print(f"node {args.node} is not running")
        return NOT_RUNNING
    node.kill()
    print(f"node {args.node} (pid {pid}) killed with SIGKILL; start it again with: {PROG} start --node {args.node}")
    return 0


def fetch(single: LocalBroker, _cluster: LocalCluster, _args: argparse.Namespace) -> int:
    if single.config.kafka_home is not None:
        print(f"using Kafka's jars in {single.libs_dir()} (KAFKA_HOME)")
        return 0
    fetched = fetch_jars()
    print(f"Kafka {kafka_version()} jars {'fetched' if fetched else 'already cached'} in {LIBS_DIR}")
    return 0


def reset(single: LocalBroker, cluster: LocalCluster, _args: argparse.Namespace) -> int:
    single.reset()
    print(f"deleted {single.config.node_dir}")
    if cluster.exists():
        cluster.reset()
        print(f"deleted the cluster in {cluster.root}")
    return 0


COMMANDS = {
    "start": start,
    "stop": stop,
    "status": status,
    "logs": logs,
    "kill": kill,
    "fetch": fetch,
    "reset": reset,
}
