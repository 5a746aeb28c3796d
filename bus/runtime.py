"""Process plumbing shared by the entry points: one-line logging and shutdown on signals."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from fleet.settings import Setting, SettingError, bootstrap_list

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """One line per event on stderr; kafka-python's own chatter only from WARNING up."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    # kafka-python logs every reconnect attempt at WARNING/ERROR while a broker is down;
    # our retry loops already say so once per attempt, in words a user can act on.
    logging.getLogger("kafka").setLevel(logging.CRITICAL if level.upper() != "DEBUG" else logging.DEBUG)


def install_shutdown(on_signal: Callable[[str], None] | None = None) -> threading.Event:
    """An event set on SIGINT or SIGTERM, so loops can finish their work and exit cleanly.

    A second signal while shutting down raises KeyboardInterrupt: the user insists.
    """
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            raise KeyboardInterrupt(name)
        stop.set()
        if on_signal is not None:
            on_signal(name)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


class OneLineParser(argparse.ArgumentParser):
    """Bad flags get one line on stderr and exit code 2, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Use a setting's parser for its flag, keeping its message instead of argparse's generic one."""

    def convert(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def add_setting_flag(parser: Any, flag: str, setting: Setting, metavar: str | None = None) -> None:
    """Add ``flag`` to a parser or argument group: its default comes from the setting's environment
    variable, its value goes through the setting's parser, and its help names both."""
    parser.add_argument(
        flag,
        type=flag_type(setting.parse),
        default=setting.read(),
        metavar=metavar,
        help=f"{setting.help} [env {setting.name}; default: %(default)s]",
    )


def check_bootstrap_flag(parser: argparse.ArgumentParser, servers: str) -> None:
    """Exit through ``parser.error`` (one line, code 2) when ``--bootstrap-servers`` cannot be used."""
    try:
        bootstrap_list(servers)
    except SettingError as e:
        parser.error(f"argument --bootstrap-servers: {e}")
