"""`python -m simulator`: flags (each also an environment variable) to a fleet and a producer run."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys

from bus.runtime import install_shutdown, run_cli, settings_from, settings_parser, setup_logging
from fleet.errors import UsageError
from fleet.geo import AREAS, BBox
from fleet.schema import MAX_DRIVER_ID_CHARS
from simulator.dispatch import RiderOptions
from simulator.fleet_model import FleetConfig, SimulatedFleet
from simulator.motion import DrivingStyle
from simulator.producer import ProducerOptions, RunConfig, run
from simulator.settings import SimulatorSettings
from simulator.status import StatusMix

log = logging.getLogger(__name__)
PROG = "python -m simulator"


def main_parser() -> argparse.ArgumentParser:
    return settings_parser(
        SimulatorSettings,
        PROG,
        "Simulate a fleet of drivers moving through a city and publish their GPS fixes to Kafka.",
        exclusive=(("area", "bbox"),),
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(main_parser(), SimulatorSettings, simulate, argv)


def parse_settings(argv: list[str] | None) -> SimulatorSettings:
    """The settings of a command line (for tests and tools; ``main`` goes through ``run_cli``)."""
    args = main_parser().parse_args(argv)
    return area_typed_beats_bbox(settings_from(SimulatorSettings, args), args)


def area_typed_beats_bbox(settings: SimulatorSettings, args: argparse.Namespace) -> SimulatorSettings:
    """An --area typed now beats a SIMULATOR_BBOX left in the environment."""
    return dataclasses.replace(settings, bbox=None) if hasattr(args, "area") else settings


def fleet_config(settings: SimulatorSettings) -> FleetConfig:
    """The fleet the settings describe; UsageError says which ones do not fit together."""
    area: BBox = settings.bbox if settings.bbox is not None else AREAS[settings.area]
    try:
        config = FleetConfig(
            drivers=settings.drivers,
            interval_s=settings.interval,
            area=area,
            id_prefix=settings.id_prefix,
            first_id=settings.first_id,
            street_grid=settings.street_grid,
            grid_bearing=settings.grid_bearing,
            style=DrivingStyle(max_speed_kmh=settings.max_speed_kmh),
            mix=StatusMix(on_trip_share=settings.on_trip_share, offline_share=settings.offline_share),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    last_id = config.driver_id(config.drivers - 1)
    if len(last_id) > MAX_DRIVER_ID_CHARS:
        raise UsageError(f"driver id {last_id[:20]}... is longer than {MAX_DRIVER_ID_CHARS} characters")
    return config


def run_config(settings: SimulatorSettings, progress: bool, seed: int) -> RunConfig:
    return RunConfig(
        bootstrap=settings.bootstrap_servers,
        topic=settings.topic,
        partitions=settings.partitions,
        duration_s=settings.duration,
        count=settings.count,
        producer=ProducerOptions(settings.linger_ms, settings.batch_size, settings.compression),
        progress=progress,
        flush_timeout_s=settings.flush_timeout,
        riders=RiderOptions(settings.riders_per_minute, settings.request_topic, settings.match_topic),
        seed=seed,
    )


def simulate(settings: SimulatorSettings, args: argparse.Namespace) -> int:
    settings = area_typed_beats_bbox(settings, args)
    config = fleet_config(settings)
    seed = settings.seed if settings.seed is not None else random.SystemRandom().randrange(2**31)
    try:
        fleet = SimulatedFleet(config, seed)
    except ValueError as e:
        raise UsageError(str(e)) from e
    setup_logging(settings.log_level)
    stop = install_shutdown(lambda name: log.info("%s received: flushing and stopping", name))
    log.info(
        "simulator started: %d drivers in %s%s, seed %d (--seed %d replays these positions)",
        config.drivers,
        describe_area(settings),
        " on a street grid" if config.street_grid else "",
        seed,
        seed,
    )
    totals = run(fleet, run_config(settings, progress=sys.stderr.isatty(), seed=seed), stop)
    print(totals.line(), flush=True)
    print(totals.summary_line(), flush=True)
    return 0


def describe_area(settings: SimulatorSettings) -> str:
    if settings.bbox is None:
        return settings.area
    box = settings.bbox
    return f"bbox {box.min_lat},{box.min_lon},{box.max_lat},{box.max_lon}"
