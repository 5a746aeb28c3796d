"""The Flask application factory, the Socket.IO event handlers, and the headers every response carries."""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_socketio import Namespace, SocketIO
from flask_socketio import disconnect as close_client

from dashboard import api, auth, page, share
from dashboard.asyncmode import ASYNC_MODE
from dashboard.service import Dashboard
from dashboard.settings import DashboardSettings, host_name
from fleet.replay import parse_control, parse_seek
from fleet.throttle import Throttle

log = logging.getLogger(__name__)
# Inside a Socket.IO handler Flask-SocketIO adds ``sid``, ``namespace`` and ``event`` to Flask's request.
socket_request: Any = request

ROOT = Path(__file__).resolve().parent.parent
# Clients send `resync`, `live` and the replay events (tens of bytes): anything bigger is not our page.
MAX_CLIENT_MESSAGE_BYTES = 1024
MAX_REQUEST_BYTES = 16 * 1024
# A client sending unknown events is closed each time; saying so once a minute is enough.
REFUSAL_LOG_INTERVAL_S = 60.0
# On every response, errors and Socket.IO's own included. A response that sets no policy of its own (all but
# the page) may load and run nothing: JSON, text and scripts served as files need none.
SECURITY_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
)
# Probes and scrapers may address the process by any of its IP addresses (a container's, bound to 0.0.0.0).
PROBE_PATHS = ("/healthz", "/metrics")


def create_app(settings: DashboardSettings | None = None) -> Flask:
    """A dashboard application; its consumer and tick start with ``app.extensions["fleet_dashboard"].start()``."""
    settings = settings or DashboardSettings.from_env()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    # A driver id may start with "/" (sent as %2F): /api/drivers//x is that driver, not a path to tidy up.
    app.url_map.merge_slashes = False
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        DEBUG=False,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
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
    # Around Socket.IO's middleware too: /socket.io is answered before Flask's routing sees it.
    app.wsgi_app = GuardedHosts(app.wsgi_app, settings.answered_hosts())  # type: ignore[method-assign]
    service = Dashboard(settings, socketio)
    app.extensions["fleet_dashboard"] = service
    auth.init_app(app, settings.token)
    page.init_app(app, settings)
    app.register_blueprint(api.api)
    app.register_blueprint(share.share)
    socketio.on_namespace(FleetEvents(service, settings.token))
    return app


def _allowed_origins(extra: tuple[str, ...]) -> Any:
    """None is Engine.IO's same-origin rule; with extra origins, the page's own origin stays allowed."""
    if not extra:
        return None

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin is None or origin == own or origin in extra

    return allowed


class FleetEvents(Namespace):
    """The Socket.IO events of docs/api.md on the default namespace: ``connect``, ``disconnect``, ``resync``
    and replay's ``replay``, ``replay_control`` and ``live``. Our page sends nothing else, and sends those
    with the documented payloads: a client sending any other event, or a payload :mod:`fleet.replay` refuses,
    is not it, and is closed.

    A class rather than decorated functions, so that every event name reaches :meth:`trigger_event`:
    with a ``"*"`` handler, a client's event literally named ``*`` reached it without its name (an
    IndexError inside Flask-SocketIO, found by tests/test_api_properties.py).
    """

    EVENTS = ("connect", "disconnect", "resync", "replay", "replay_control", "live")

    def __init__(self, service: Dashboard, token: str) -> None:
        super().__init__("/")
        self.service = service
        self.token = token
        self.refusals = Throttle(REFUSAL_LOG_INTERVAL_S)

    def trigger_event(self, event: Any, *args: Any) -> Any:
        if isinstance(event, str) and event in self.EVENTS:
            return super().trigger_event(event, *args)
        return super().trigger_event("unknown", args[0], event)  # args[0]: the client's sid

    def on_connect(self, auth_payload: dict[str, Any] | None = None) -> bool:
        # python-socketio also runs this for a client's own event named "connect": such a client would get
        # a fresh snapshot each time, past the resync limit. A real handshake hands over the environ.
        handshake = socket_request.event["args"]
        if not handshake or handshake[0] is not request.environ:
            self.on_unknown("connect")
            return False
        if not auth.authorized(self.token, request, auth_payload):
            log.info("refused a Socket.IO client from %s: no valid token", request.remote_addr)
            return False
        self.service.push.add(socket_request.sid)
        return True

    def on_disconnect(self, *_reason: Any) -> None:
        if self.socketio.server.manager.is_connected(socket_request.sid, socket_request.namespace):
            self.on_unknown("disconnect")  # the client's own event: a real disconnect is already under way
            return
        self.service.replays.stop(socket_request.sid, live=False)  # its consumer freed at once
        self.service.push.remove(socket_request.sid)

    def on_resync(self, *_ignored: Any) -> None:
        self.service.push.request_snapshot(socket_request.sid)

    def on_replay(self, *args: Any) -> None:
        seek = parse_seek(args, time.time())
        if seek is None:
            self.on_unknown("replay (bad payload)")
            return
        self.service.replays.seek(socket_request.sid, seek)

    def on_replay_control(self, *args: Any) -> None:
        control = parse_control(args)
        if control is None:
            self.on_unknown("replay_control (bad payload)")
            return
        self.service.replays.control(socket_request.sid, control)

    def on_live(self, *_ignored: Any) -> None:
        self.service.replays.stop(socket_request.sid)

    def on_unknown(self, event: Any) -> None:
        suppressed = self.refusals.ready()
        if suppressed is not None:
            log.warning(
                "closed a Socket.IO client from %s: it sent %.40r, not an event of ours "
                "(one such line a minute at most; %d other clients closed since the previous one)",
                request.remote_addr,
                event,
                suppressed,
            )
        close_client()


class GuardedHosts:
    """WSGI middleware: answers only the allowed Host names, and adds :data:`SECURITY_HEADERS` to every response.

    A DNS-rebinding page (a site whose name an attacker points at 127.0.0.1 after the page loaded) is
    same-origin with whatever it reaches, so Origin checks and CORS let it read the map; its requests
    carry its own name as Host, so refusing unknown Hosts stops it. An IP address as Host cannot come
    from such a page, so probes of :data:`PROBE_PATHS` may use any.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(hosts)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def secured(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, with_security_headers(headers), exc_info)

        if not self.answers(environ.get("HTTP_HOST"), environ.get("PATH_INFO", "")):
            body = b"This dashboard does not answer to this host name: list it in DASHBOARD_ALLOWED_HOSTS.\n"
            secured(
                "400 Bad Request", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
            )
            return [body]
        return self.app(environ, secured)

    def answers(self, host_header: str | None, path: str) -> bool:
        """Whether a request with this Host header (None: HTTP/1.0 without one) for ``path`` is served."""
        if host_header is None:
            return True  # browsers always send Host: a request without one comes from no web page
        host = host_name(host_header)
        return host in self.hosts or (path in PROBE_PATHS and _is_ip_address(host))


def with_security_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` plus each of :data:`SECURITY_HEADERS` the response does not set itself."""
    present = {name.lower() for name, _ in headers}
    return headers + [(name, value) for name, value in SECURITY_HEADERS if name.lower() not in present]


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
