"""`python -m dashboard`: flags (each also an environment variable) to a running dashboard."""

from __future__ import annotations

import argparse
import logging
import os
import socket

from bus.runtime import install_shutdown, run_cli, settings_parser, setup_logging
from dashboard import asyncmode
from dashboard.app import create_app
from dashboard.asyncmode import ASYNC_MODE
from dashboard.settings import DashboardSettings
from fleet.errors import CannotListen

log = logging.getLogger(__name__)
PROG = "python -m dashboard"
# Requests in flight get this long to finish once the Socket.IO clients are closed.
SHUTDOWN_GRACE_S = 5.0


def main_parser() -> argparse.ArgumentParser:
    return settings_parser(
        DashboardSettings,
        PROG,
        "Serve the live fleet map: consume driver locations from Kafka and push them to browsers.",
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(main_parser(), DashboardSettings, serve, argv)


def serve(settings: DashboardSettings, _args: argparse.Namespace) -> int:
    """Run the dashboard until SIGINT or SIGTERM."""
    setup_logging(settings.log_level)
    try:
        ensure_port_free(settings.host, settings.port)
    except OSError as e:
        raise CannotListen(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}") from e
    app = create_app(settings)
    service = app.extensions["fleet_dashboard"]
    socketio = app.extensions["socketio"]
    stop = install_shutdown(lambda name: log.info("%s received: stopping", name))
    log.info(
        "dashboard started (pid %d, %s): topic %s at %s, tick %d ms, read-back %.0f s, token %s, dead letters %s",
        os.getpid(),
        ASYNC_MODE,
        settings.topic,
        settings.bootstrap_servers,
        settings.tick_ms,
        settings.readback_s,
        "required" if settings.token else "off",
        "on" if settings.dead_letter else "off",
    )
    service.start()
    log.info("listening on %s", settings.url)
    try:
        asyncmode.serve(
            lambda: socketio.run(app, host=settings.host, port=settings.port, log_output=False),
            stop,
            before_stop=service.disconnect_clients,
            grace_s=SHUTDOWN_GRACE_S,
        )
    except OSError as e:
        raise CannotListen(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}") from e
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
