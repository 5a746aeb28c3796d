"""HTTP: the fleet as JSON, health and Prometheus metrics (docs/api.md, "HTTP")."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

from dashboard.rider_push import EVENT_RIDES
from dashboard.service import Dashboard
from fleet.riders import riders_json
from fleet.state import Driver

api = Blueprint("api", __name__)
# Streamed in chunks so that listing 100,000 drivers lets the frames and other requests through.
CHUNK_DRIVERS = 1000
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def dashboard() -> Dashboard:
    return current_app.extensions["fleet_dashboard"]


@api.get("/api/drivers")
def list_drivers() -> Response:
    service = dashboard()
    drivers = list(service.state)
    stale_after_s = service.state.stale_after_s
    sleep = current_app.extensions["socketio"].sleep

    def body() -> Iterator[str]:
        yield f'{{"count": {len(drivers)}, "drivers": ['
        for start in range(0, len(drivers), CHUNK_DRIVERS):
            now = time.time()
            chunk = drivers[start : start + CHUNK_DRIVERS]
            yield ("," if start else "") + ",".join(_json(driver_json(d, now, stale_after_s)) for d in chunk)
            sleep(0)
        yield "]}"

    return _json_response_stream(body())


@api.get("/api/drivers/<path:driver_id>")
def one_driver(driver_id: str) -> Response:
    service = dashboard()
    driver = service.state.get(driver_id)
    if driver is None:
        return json_response({"error": "unknown driver", "driver_id": driver_id}, 404)
    body = driver_json(driver, time.time(), service.state.stale_after_s)
    body["trail"] = driver.trail_points()
    return json_response(body)


@api.get("/api/riders")
def list_riders() -> Response:
    """The rides on the map and the counts: the ``riders`` event without its Socket.IO envelope."""
    return json_response(riders_json(dashboard().riders, time.time(), EVENT_RIDES))


@api.get("/healthz")
def healthz() -> Response:
    healthy, body = dashboard().health()
    return json_response(body, 200 if healthy else 503)


@api.get("/metrics")
def metrics() -> Response:
    return Response(dashboard().metrics.render(), mimetype=CONTENT_TYPE_LATEST)


def driver_json(driver: Driver, now: float, stale_after_s: float) -> dict[str, Any]:
    return {
        "driver_id": driver.driver_id,
        "latitude": driver.latitude,
        "longitude": driver.longitude,
        "timestamp": driver.timestamp,
        "heading": driver.heading,
        "speed_kmh": driver.speed_kmh,
        "status": driver.status,
        "seq": driver.seq,
        "partition": driver.partition,
        "offset": driver.offset,
        "age_s": round(now - driver.timestamp, 3),
        "stale": driver.is_stale(now, stale_after_s),
    }


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return _with_safety_headers(Response(_json(body), status=status, mimetype="application/json"))


def _json(value: Any) -> str:
    """JSON in which text from Kafka can never close a script tag or open markup."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_HTML_SAFE)


def _json_response_stream(chunks: Iterator[str]) -> Response:
    return _with_safety_headers(Response(chunks, mimetype="application/json"))


def _with_safety_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
