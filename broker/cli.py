"""`python -m broker start | stop | status | logs | fetch | reset`."""

from __future__ import annotations

import argparse
import sys
import time

from broker.local import LIBS_DIR, LocalBroker, fetch_jars, kafka_version
from broker.settings import BrokerSettings
from bus.runtime import run_cli, settings_parser, setup_logging

PROG = "python -m broker"


def main_parser() -> argparse.ArgumentParser:
    parser = settings_parser(
        BrokerSettings, PROG, "Run a single-node Apache Kafka broker (KRaft) from Maven jars for the demo and tests."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("start", help="start the broker and wait until it answers (no-op if running)")
    commands.add_parser("stop", help="stop the broker cleanly and free its ports")
    commands.add_parser("status", help="say whether the broker runs, where, and where its data lives")
    logs = commands.add_parser("logs", help="print the end of the broker's log")
    logs.add_argument("-n", "--lines", type=int, default=40, help="how many lines (default: %(default)s)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    commands.add_parser("fetch", help="download Kafka's jars with Maven (start does this when needed)")
    commands.add_parser("reset", help="delete the broker's data and cluster id (it must be stopped)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(main_parser(), BrokerSettings, command, argv)


def command(settings: BrokerSettings, args: argparse.Namespace) -> int:
    setup_logging("INFO")
    return COMMANDS[args.command](LocalBroker(settings), args)


def start(broker: LocalBroker, _args: argparse.Namespace) -> int:
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


def stop(broker: LocalBroker, _args: argparse.Namespace) -> int:
    seconds = broker.stop()
    if seconds is None:
        print("Kafka broker is not running")
    else:
        print(
            f"Kafka broker stopped in {seconds:.1f} s; ports {broker.config.port} and "
            f"{broker.config.controller_port} are free"
        )
    return 0


def status(broker: LocalBroker, _args: argparse.Namespace) -> int:
    pid = broker.running_pid()
    if pid is None:
        print(f"Kafka broker is not running (data in {broker.data_dir})")
        return 3  # like `systemctl status`: scripts can test for "not running"
    answering = "answers metadata requests" if broker.answers_metadata() else "does NOT answer yet"
    print(f"Kafka broker running at {broker.bootstrap} (pid {pid}), {answering}; data in {broker.data_dir}")
    return 0


def logs(broker: LocalBroker, args: argparse.Namespace) -> int:
    if not broker.log_file.exists():
        print(f"no log yet at {broker.log_file}")
        return 1
    with broker.log_file.open(errors="replace") as f:
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


def fetch(broker: LocalBroker, _args: argparse.Namespace) -> int:
    if broker.config.kafka_home is not None:
        print(f"using Kafka's jars in {broker.libs_dir()} (KAFKA_HOME)")
        return 0
    fetched = fetch_jars()
    print(f"Kafka {kafka_version()} jars {'fetched' if fetched else 'already cached'} in {LIBS_DIR}")
    return 0


def reset(broker: LocalBroker, _args: argparse.Namespace) -> int:
    broker.reset()
    print(f"deleted {broker.config.node_dir}")
    return 0


COMMANDS = {"start": start, "stop": stop, "status": status, "logs": logs, "fetch": fetch, "reset": reset}
