"""The Flask application factory and the Socket.IO event handlers."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_socketio import SocketIO

from dashboard import api, auth, page
from dashboard.asyncmode import ASYNC_MODE
from dashboard.service import Dashboard
from dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# Clients send only `resync` (a few bytes): anything bigger is not our page.
MAX_CLIENT_MESSAGE_BYTES = 1024
MAX_REQUEST_BYTES = 16 * 1024


def create_app(settings: DashboardSettings | None = None) -> Flask:
    """A dashboard application; its consumer and tick start with ``app.extensions["fleet_dashboard"].start()``."""
    settings = settings or DashboardSettings.from_env()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        DEBUG=False,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        DASHBOARD_TOKEN=settings.token or None,  # the page may hand it to its Socket.IO client
        DASHBOARD_SETTINGS=settings,
    )
    socketio = SocketIO(
        app,
        async_mode=ASYNC_MODE,
        cors_allowed_origins=_allowed_origins(settings.cors_origins),
        max_http_buffer_size=MAX_CLIENT_MESSAGE_BYTES,
        logger=False,
        engineio_logger=False,
    )
    service = Dashboard(settings, socketio)
    app.extensions["fleet_dashboard"] = service
    auth.init_app(app, settings.token)
    page.init_app(app)
    app.register_blueprint(api.api)
    _register_events(socketio, service, settings.token)
    return app


def _allowed_origins(extra: tuple[str, ...]) -> Any:
    """None is Engine.IO's same-origin rule; with extra origins, the page's own origin stays allowed."""
    if not extra:
        return None

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin is None or origin == own or origin in extra

    return allowed


def _register_events(socketio: SocketIO, service: Dashboard, token: str) -> None:
    @socketio.on("connect")
    def connect(auth_payload: dict[str, Any] | None = None) -> bool:
        if not auth.authorized(token, request, auth_payload):
            log.info("refused a Socket.IO client from %s: no valid token", request.remote_addr)
            return False
        service.push.add(request.sid)
        return True

    @socketio.on("disconnect")
    def disconnect(*_reason: Any) -> None:
        service.push.remove(request.sid)

    @socketio.on("resync")
    def resync(*_ignored: Any) -> None:
        service.push.request_snapshot(request.sid)
