"""`python -m zones`: flags (each also an environment variable) to a running zone processor."""

from __future__ import annotations

import argparse
import logging

from bus.runtime import install_shutdown, run_cli, settings_parser, setup_logging
from zones.service import ZonesService
from zones.settings import ZonesSettings

log = logging.getLogger(__name__)
PROG = "python -m zones"


def main_parser() -> argparse.ArgumentParser:
    return settings_parser(
        ZonesSettings,
        PROG,
        "Zone processor: reads driver-location (consumer group) and the zones topic, writes enter / exit / dwell "
        "events to zone-events exactly once (Kafka transactions, state in the compacted zones-state changelog). "
        "Run several with the same --group-id and a distinct --instance-id to share the partitions.",
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(main_parser(), ZonesSettings, serve, argv)


def serve(settings: ZonesSettings, _args: argparse.Namespace) -> int:
    setup_logging(settings.log_level)
    stop = install_shutdown(lambda name: log.info("%s received: committing and stopping", name))
    return ZonesService(settings, stop).run()
