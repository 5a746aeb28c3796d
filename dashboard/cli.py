"""`python -m dashboard`: flags (each also an environment variable) to a running dashboard."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from bus.runtime import OneLineParser, add_setting_flag, check_bootstrap_flag, install_shutdown, setup_logging
from dashboard import asyncmode
from dashboard import settings as dashboard_settings
from dashboard.app import create_app
from dashboard.asyncmode import ASYNC_MODE
from dashboard.settings import DashboardSettings
from fleet.settings import DRIVER_TOPIC, KAFKA_BOOTSTRAP_SERVERS, LOG_LEVEL, SettingError

log = logging.getLogger(__name__)
PROG = "python -m dashboard"
# Requests in flight get this long to finish once the Socket.IO clients are closed.
SHUTDOWN_GRACE_S = 5.0


def main_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Serve the live fleet map: consume driver locations from Kafka and push them to browsers.",
        epilog="Every flag can also be set with the environment variable named in its help; "
        "the other settings (DASHBOARD_TOKEN, DASHBOARD_TICK_MS, ...) are in the README.",
    )
    add_setting_flag(parser, "--host", dashboard_settings.HOST, "ADDRESS")
    add_setting_flag(parser, "--port", dashboard_settings.PORT, "PORT")
    add_setting_flag(parser, "--topic", DRIVER_TOPIC, "NAME")
    add_setting_flag(parser, "--bootstrap-servers", KAFKA_BOOTSTRAP_SERVERS, "HOST:PORT[,...]")
    add_setting_flag(parser, "--log-level", LOG_LEVEL, "LEVEL")
    return parser


def parse_settings(argv: list[str] | None) -> tuple[DashboardSettings, str]:
    """The settings from the environment with the flags on top, and the log level."""
    parser = main_parser()
    args = parser.parse_args(argv)
    check_bootstrap_flag(parser, args.bootstrap_servers)
    settings = DashboardSettings.from_env().with_overrides(
        host=args.host, port=args.port, topic=args.topic, bootstrap_servers=args.bootstrap_servers
    )
    return settings, args.log_level


def main(argv: list[str] | None = None) -> int:
    try:
        settings, log_level = parse_settings(argv)
    except SettingError as e:  # an environment variable that cannot be used
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    setup_logging(log_level)
    try:
        ensure_port_free(settings.host, settings.port)
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, e.strerror or e)
        return 1
    try:
        app = create_app(settings)
    except SettingError as e:  # the page's own settings (TILE_URL, MAP_AREA) are read here
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    service = app.extensions["fleet_dashboard"]
    socketio = app.extensions["socketio"]
    stop = install_shutdown(lambda name: log.info("%s received: stopping", name))
    log.info(
        "dashboard started (pid %d, %s): topic %s at %s, tick %d ms, read-back %.0f s, token %s, dead letters %s",
        os.getpid(), ASYNC_MODE, settings.topic, settings.bootstrap_servers, settings.tick_ms, settings.readback_s,
        "required" if settings.token else "off", "on" if settings.dead_letter else "off",
    )  # fmt: skip
    service.start()
    log.info("listening on http://%s:%d", _url_host(settings.host), settings.port)
    try:
        asyncmode.serve(
            lambda: socketio.run(app, host=settings.host, port=settings.port, log_output=False),
            stop,
            before_stop=service.disconnect_clients,
            grace_s=SHUTDOWN_GRACE_S,
        )
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, e.strerror or e)
        return 1
    finally:
        service.stop()
    log.info("dashboard stopped")
    return 0


def ensure_port_free(host: str, port: int) -> None:
    """Raise OSError when another process listens on ``host:port``.

    eventlet listens with SO_REUSEPORT, so a second dashboard on the same port would not fail: it
    would silently share the connections with the first one. Binding without it tells.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", ""} else (f"[{host}]" if ":" in host else host)
