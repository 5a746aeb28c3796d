"""The project's own exceptions share one base, so one place (``bus.runtime.run_cli``) turns any of them
into one line and an exit code."""

from __future__ import annotations


class FleetError(Exception):
    """An error a process reports in one line and exits with ``exit_code`` (1: failed; 2: usage)."""

    exit_code = 1


class UsageError(FleetError):
    """Settings that are each valid but do not fit together (a driver id longer than the schema allows...)."""

    exit_code = 2


class CannotListen(FleetError):
    """A server's address is taken, or not this machine's."""
