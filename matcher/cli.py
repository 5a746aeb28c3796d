"""`python -m matcher`: flags (each also an environment variable) to a running matcher."""

from __future__ import annotations

import argparse
import logging

from bus.runtime import install_shutdown, run_cli, settings_parser, setup_logging
from fleet.errors import UsageError
from matcher.service import MatcherService
from matcher.settings import MatcherSettings

log = logging.getLogger(__name__)
PROG = "python -m matcher"


def main_parser() -> argparse.ArgumentParser:
    return settings_parser(
        MatcherSettings,
        PROG,
        "Match ride requests with the nearest free driver: reads driver-location and ride-requests, answers each "
        "request once on ride-matches (Kafka transactions). Run several matchers with the same --group-id and a "
        "distinct --instance-id to share the requests.",
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(main_parser(), MatcherSettings, serve, argv)


def serve(settings: MatcherSettings, _args: argparse.Namespace) -> int:
    try:
        settings.match  # noqa: B018 - the numbers must fit together before anything starts
    except ValueError as e:
        raise UsageError(str(e)) from e
    setup_logging(settings.log_level)
    stop = install_shutdown(lambda name: log.info("%s received: committing and stopping", name))
    return MatcherService(settings, stop).run()
