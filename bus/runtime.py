"""Process plumbing shared by the entry points: the command line from the settings, the one error
boundary, one-line logging and shutdown on signals."""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

from kafka.errors import KafkaError

from fleet.errors import FleetError
from fleet.settings import Setting, Settings, parse_bool

S = TypeVar("S", bound=Settings)

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


def settings_parser(
    cls: type[Settings], prog: str, description: str, exclusive: tuple[tuple[str, ...], ...] = ()
) -> OneLineParser:
    """The command line of a process, generated from its settings dataclass: one flag per
    :func:`~fleet.settings.setting_field` given a flag, its help naming the environment variable and the
    default; the settings without a flag are listed in the epilog. A flag left out is absent from the
    parsed arguments, so the environment (read after parsing, see :func:`settings_from`) decides.
    ``exclusive`` names groups of fields whose flags exclude each other."""
    env_only = [f.metadata["setting"] for f in fields(cls) if "setting" in f.metadata and not f.metadata["flag"]]
    parser = OneLineParser(
        prog=prog,
        description=description,
        # A prefix of a flag (`--node` for `--node-dir`) is a typo to report, not a guess to make.
        allow_abbrev=False,
        epilog="Every flag can also be set with the environment variable named in its help. Environment only: "
        + ", ".join(f"{s.name} ({_shown(s.default)})" for s in env_only)
        + ". The README lists them all.",
    )
    groups: dict[str, Any] = {}
    for group in exclusive:
        shared = parser.add_mutually_exclusive_group()
        groups.update(dict.fromkeys(group, shared))
    for f in fields(cls):
        flag = f.metadata.get("flag")
        if flag:
            add_setting_flag(groups.get(f.name, parser), flag, f.name, f.metadata["setting"], f.metadata["metavar"])
    return parser


def add_setting_flag(parser: Any, flag: str, dest: str, setting: Setting, metavar: str | None = None) -> None:
    """Add ``flag`` to a parser or argument group: its value goes through the setting's parser, its help
    names the environment variable and the default; a boolean setting gets ``--x`` and ``--no-x``."""
    help_text = f"{setting.help} [env {setting.name}; default: {_shown(setting.default)}]".replace("%", "%%")
    if setting.parse is parse_bool:
        parser.add_argument(
            flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
        )
    else:
        parser.add_argument(
            flag, dest=dest, type=flag_type(setting.parse), default=argparse.SUPPRESS, metavar=metavar, help=help_text
        )


def settings_from(cls: type[S], args: argparse.Namespace) -> S:
    """The environment's settings with the flags typed on top (even a flag meaning "none"): read once,
    after parsing."""
    typed = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls.from_env().with_overrides(**typed)


class InstanceTaken(FleetError):
    """Another live process on this host already runs under the name this one was given."""


def claim_instance(kind: str, name: str) -> IO[str]:
    """Hold a lock named after ``kind`` and ``name`` for as long as this process lives (keep the file
    returned open), or raise :class:`InstanceTaken` saying which process holds it.

    The lock is the operating system's (``flock``): a process that crashed has released it, so only a
    live process on this host stops a second one; an instance elsewhere is Kafka's to fence.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:150]
    folder = Path(tempfile.gettempdir()) / "kafka-fleet-map"
    folder.mkdir(exist_ok=True)
    handle = (folder / f"{kind}-{safe}.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise InstanceTaken(f"{holder} on this host already runs as {kind} {name!r}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def run_cli(
    parser: argparse.ArgumentParser,
    cls: type[S],
    body: Callable[[S, argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """The one boundary of every process (click's ``Command.main``): parse, read the settings, run ``body``.

    A bad flag or setting is one line and exit 2; an error of ours (:class:`~fleet.errors.FleetError`) one
    line and its exit code; Kafka not answering one line naming the servers and exit 1; Ctrl-C exit 130.
    """
    args = parser.parse_args(argv)  # a bad flag: one line and exit 2 (OneLineParser)
    settings = None
    try:
        settings = settings_from(cls, args)
        return body(settings, args)
    except FleetError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KafkaError as e:
        servers = getattr(settings, "bootstrap_servers", None) or "the bootstrap servers"
        print(
            f"{parser.prog}: error: Kafka at {servers} does not answer ({type(e).__name__}: {e}); is it up?",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


def _shown(default: Any) -> str:
    if default is None or default == "" or default == ():
        return "unset"
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)
