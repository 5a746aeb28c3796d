"""`python -m matcher`: flags (each also an environment variable) to a running matcher."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from bus.runtime import (
    OneLineParser,
    add_setting_flag,
    check_bootstrap_flag,
    install_shutdown,
    setup_logging,
)
from fleet.settings import (
    DRIVER_TOPIC,
    KAFKA_BOOTSTRAP_SERVERS,
    LOG_LEVEL,
    RIDE_MATCH_TOPIC,
    RIDE_REQUEST_TOPIC,
    SettingError,
)
from matcher import settings
from matcher.matching import MatchConfig
from matcher.service import MatcherService, ServiceConfig

log = logging.getLogger(__name__)


def main_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m matcher",
        description="Match ride requests with the nearest free driver: reads driver-location and ride-requests, "
        "answers each request once on ride-matches (Kafka transactions).",
        epilog="Every flag can also be set with the environment variable named in its help. "
        "Run several matchers with the same --group-id and a distinct --instance-id to share the requests.",
    )

    add_setting_flag(parser, "--bootstrap-servers", KAFKA_BOOTSTRAP_SERVERS, "HOST:PORT[,...]")
    add_setting_flag(parser, "--driver-topic", DRIVER_TOPIC, "NAME")
    add_setting_flag(parser, "--request-topic", RIDE_REQUEST_TOPIC, "NAME")
    add_setting_flag(parser, "--match-topic", RIDE_MATCH_TOPIC, "NAME")
    add_setting_flag(parser, "--group-id", settings.GROUP_ID, "NAME")
    add_setting_flag(parser, "--instance-id", settings.INSTANCE_ID, "NAME")
    add_setting_flag(parser, "--max-radius-km", settings.MAX_RADIUS_KM, "KM")
    add_setting_flag(parser, "--city-speed-kmh", settings.CITY_SPEED_KMH, "KMH")
    add_setting_flag(parser, "--max-wait-s", settings.MAX_WAIT_S, "SECONDS")
    add_setting_flag(parser, "--reservation-timeout-s", settings.RESERVATION_TIMEOUT_S, "SECONDS")
    add_setting_flag(parser, "--driver-max-age-s", settings.DRIVER_MAX_AGE_S, "SECONDS")
    add_setting_flag(parser, "--max-drivers", settings.MAX_DRIVERS, "N")
    add_setting_flag(parser, "--max-waiting", settings.MAX_WAITING, "N")
    add_setting_flag(parser, "--partitions", settings.PARTITIONS, "N")
    add_setting_flag(parser, "--commit-interval-ms", settings.COMMIT_INTERVAL_MS, "MS")
    add_setting_flag(parser, "--log-interval-s", settings.LOG_INTERVAL_S, "SECONDS")
    add_setting_flag(parser, "--metrics-port", settings.METRICS_PORT, "PORT")
    add_setting_flag(parser, "--metrics-host", settings.METRICS_HOST, "ADDRESS")
    add_setting_flag(parser, "--log-level", LOG_LEVEL, "LEVEL")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = main_parser()
    args = parser.parse_args(argv)
    check_bootstrap_flag(parser, args.bootstrap_servers)
    return args


def service_config(args: argparse.Namespace) -> ServiceConfig:
    match = MatchConfig(
        max_radius_m=args.max_radius_km * 1000,
        city_speed_kmh=args.city_speed_kmh,
        max_wait_s=args.max_wait_s,
        reservation_timeout_s=args.reservation_timeout_s,
        driver_max_age_s=args.driver_max_age_s,
        max_drivers=args.max_drivers,
        max_waiting=args.max_waiting,
    )
    return ServiceConfig(
        bootstrap=args.bootstrap_servers,
        driver_topic=args.driver_topic,
        request_topic=args.request_topic,
        match_topic=args.match_topic,
        group_id=args.group_id,
        instance_id=args.instance_id or socket.gethostname(),
        partitions=args.partitions,
        commit_interval_s=args.commit_interval_ms / 1000,
        log_interval_s=args.log_interval_s,
        match=match,
        metrics_address=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        config = service_config(args)
    except (SettingError, ValueError) as e:  # an environment variable read as a flag default
        print(f"python -m matcher: error: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    stop = install_shutdown(lambda name: log.info("%s received: committing and stopping", name))
    return MatcherService(config, stop).run()
