"""The optional access token (``DASHBOARD_TOKEN``) for the page, the API and Socket.IO.

A request carries it as ``Authorization: Bearer <token>``, as ``?token=<token>`` once (which sets an
HttpOnly cookie and redirects to the same address without it, so the token leaves the address bar
and the history), or as that cookie. A Socket.IO client may also pass it in its ``auth`` payload.
The page never holds the token: the browser sends the cookie with its own requests and with the
Socket.IO handshake. ``/healthz``, ``/metrics`` and static files stay open: probes and scrapers need
them, and they carry no driver data. Everything guarded is ``Cache-Control: no-store``, so no
shared cache keeps what only the token may read.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from flask import Flask, Request, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

COOKIE = "dashboard_token"
OPEN_ENDPOINTS = {"api.healthz", "api.metrics", "static"}


def init_app(app: Flask, token: str) -> None:
    """Guard every route but the open ones when a token is set; do nothing otherwise."""
    if not token:
        return

    @app.before_request
    def require_token() -> WerkzeugResponse | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        query_token = request.args.get("token")
        if query_token is not None and _same(query_token, token) and request.method == "GET":
            return _redirect_setting_cookie(token)
        if authorized(token, request):
            return None
        return _unauthorized()

    @app.after_request
    def not_stored(response: Response) -> Response:
        if request.endpoint not in OPEN_ENDPOINTS:
            response.headers["Cache-Control"] = "no-store"
        return response


def request_token(req: Request, auth: Mapping[str, Any] | None = None) -> str | None:
    """The token a request (or a Socket.IO handshake with its ``auth`` payload) presents, if any."""
    if isinstance(auth, Mapping) and isinstance(auth.get("token"), str):
        return auth["token"]
    header = req.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return req.cookies.get(COOKIE)


def authorized(token: str, req: Request, auth: Mapping[str, Any] | None = None) -> bool:
    """Whether a request may proceed: always when no token is configured."""
    if not token:
        return True
    presented = request_token(req, auth)
    return presented is not None and _same(presented, token)


def _same(presented: str, token: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8"))


def _redirect_setting_cookie(token: str) -> WerkzeugResponse:
    query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
    response = redirect(same_origin_path(request.path) + (f"?{query}" if query else ""), code=302)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure, path="/")
    response.headers["Cache-Control"] = "no-store"
    return response


def same_origin_path(path: str) -> str:
    """``path`` as a Location that stays on this host.

    A browser reads ``//evil.example/x`` and ``/\\evil.example`` as another host (and drops a tab or a newline
    between the slashes first), so leading slashes and backslashes collapse into one, and everything that is
    not plainly a path character (a tab included) is percent-encoded.
    """
    return "/" + quote(path.lstrip("/\\"), safe="/!$&'()*+,;=:@-._~")


def _unauthorized() -> Response:
    if request.path.startswith("/api/"):
        response = jsonify(error="token required")
    else:
        response = Response(
            "This dashboard needs its access token: open it once with ?token=<token>.\n", mimetype="text/plain"
        )
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="dashboard"'
    return response
