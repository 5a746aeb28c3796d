"""`python -m simulator`: flags (each also an environment variable) to a fleet and a producer run."""

from __future__ import annotations

import argparse
import logging
import random
import sys

from bus.runtime import (
    OneLineParser,
    add_setting_flag,
    check_bootstrap_flag,
    install_shutdown,
    setup_logging,
)
from fleet.geo import AREAS, BBox
from fleet.schema import MAX_DRIVER_ID_CHARS
from fleet.settings import (
    DRIVER_TOPIC,
    KAFKA_BOOTSTRAP_SERVERS,
    LOG_LEVEL,
    RIDE_MATCH_TOPIC,
    RIDE_REQUEST_TOPIC,
    SettingError,
)
from simulator import settings
from simulator.dispatch import RiderOptions
from simulator.fleet_model import Fleet, FleetConfig
from simulator.motion import DrivingStyle
from simulator.producer import ProducerOptions, RunConfig, run
from simulator.status import StatusMix

log = logging.getLogger(__name__)


def main_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m simulator",
        description="Simulate a fleet of drivers moving through a city and publish their GPS fixes to Kafka.",
        epilog="Every flag can also be set with the environment variable named in its help.",
    )

    add_setting_flag(parser, "--drivers", settings.DRIVERS, "N")
    add_setting_flag(parser, "--interval", settings.INTERVAL, "SECONDS")
    add_setting_flag(parser, "--duration", settings.DURATION, "SECONDS")
    add_setting_flag(parser, "--count", settings.COUNT, "FIXES")
    add_setting_flag(parser, "--bootstrap-servers", KAFKA_BOOTSTRAP_SERVERS, "HOST:PORT[,...]")
    add_setting_flag(parser, "--topic", DRIVER_TOPIC, "NAME")
    add_setting_flag(parser, "--partitions", settings.PARTITIONS, "N")
    where = parser.add_mutually_exclusive_group()
    add_setting_flag(where, "--area", settings.AREA, "{" + ",".join(AREAS) + "}")
    add_setting_flag(where, "--bbox", settings.BBOX, "MIN_LAT,MIN_LON,MAX_LAT,MAX_LON")
    add_setting_flag(parser, "--seed", settings.SEED, "N")
    add_setting_flag(parser, "--id-prefix", settings.ID_PREFIX, "TEXT")
    add_setting_flag(parser, "--first-id", settings.FIRST_ID, "N")
    add_setting_flag(parser, "--on-trip-share", settings.ON_TRIP_SHARE, "SHARE")
    add_setting_flag(parser, "--offline-share", settings.OFFLINE_SHARE, "SHARE")
    add_setting_flag(parser, "--max-speed-kmh", settings.MAX_SPEED_KMH, "KMH")
    parser.add_argument(
        "--street-grid",
        action=argparse.BooleanOptionalAction,
        default=settings.STREET_GRID.read(),
        help=f"{settings.STREET_GRID.help} [env {settings.STREET_GRID.name}; default: %(default)s]",
    )
    add_setting_flag(parser, "--grid-bearing", settings.GRID_BEARING, "DEGREES")
    add_setting_flag(parser, "--riders-per-minute", settings.RIDERS_PER_MINUTE, "R")
    add_setting_flag(parser, "--request-topic", RIDE_REQUEST_TOPIC, "NAME")
    add_setting_flag(parser, "--match-topic", RIDE_MATCH_TOPIC, "NAME")
    add_setting_flag(parser, "--flush-timeout", settings.FLUSH_TIMEOUT, "SECONDS")
    add_setting_flag(parser, "--linger-ms", settings.LINGER_MS, "MS")
    add_setting_flag(parser, "--batch-size", settings.BATCH_SIZE, "BYTES")
    add_setting_flag(parser, "--compression", settings.COMPRESSION, "{none,gzip,snappy,lz4,zstd}")
    add_setting_flag(parser, "--log-level", LOG_LEVEL, "LEVEL")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = main_parser()
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    if any(flag == "--area" or flag.startswith("--area=") for flag in given):
        args.bbox = None  # an --area typed now beats a SIMULATOR_BBOX left in the environment
    check_bootstrap_flag(parser, args.bootstrap_servers)
    return args


def fleet_config(args: argparse.Namespace) -> FleetConfig:
    """The fleet the flags describe; ValueError says which flags do not fit together."""
    area: BBox = args.bbox if args.bbox is not None else AREAS[args.area]
    config = FleetConfig(
        drivers=args.drivers,
        interval_s=args.interval,
        area=area,
        id_prefix=args.id_prefix,
        first_id=args.first_id,
        street_grid=args.street_grid,
        grid_bearing=args.grid_bearing,
        style=DrivingStyle(max_speed_kmh=args.max_speed_kmh),
        mix=StatusMix(on_trip_share=args.on_trip_share, offline_share=args.offline_share),
    )
    last_id = config.driver_id(config.drivers - 1)
    if len(last_id) > MAX_DRIVER_ID_CHARS:
        raise ValueError(f"driver id {last_id[:20]}... is longer than {MAX_DRIVER_ID_CHARS} characters")
    return config


def run_config(args: argparse.Namespace, progress: bool, seed: int) -> RunConfig:
    return RunConfig(
        bootstrap=args.bootstrap_servers,
        topic=args.topic,
        partitions=args.partitions,
        duration_s=args.duration,
        count=args.count,
        producer=ProducerOptions(linger_ms=args.linger_ms, batch_size=args.batch_size, compression=args.compression),
        progress=progress,
        flush_timeout_s=args.flush_timeout,
        riders=RiderOptions(args.riders_per_minute, args.request_topic, args.match_topic),
        seed=seed,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SettingError as e:  # an environment variable read as a flag default
        print(f"python -m simulator: error: {e}", file=sys.stderr)
        return 2
    try:
        config = fleet_config(args)
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
        fleet = Fleet(config, seed)
    except ValueError as e:
        print(f"python -m simulator: error: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    stop = install_shutdown(lambda name: log.info("%s received: flushing and stopping", name))
    log.info(
        "simulator started: %d drivers in %s%s, seed %d (--seed %d replays these positions)",
        config.drivers, describe_area(args), " on a street grid" if config.street_grid else "", seed, seed,
    )  # fmt: skip
    totals = run(fleet, run_config(args, progress=sys.stderr.isatty(), seed=seed), stop)
    print(totals.line(), flush=True)
    return 0


def describe_area(args: argparse.Namespace) -> str:
    if args.bbox is None:
        return args.area
    box = args.bbox
    return f"bbox {box.min_lat},{box.min_lon},{box.max_lat},{box.max_lon}"
