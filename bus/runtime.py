"""Process plumbing shared by the entry points: one-line logging and shutdown on signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

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
