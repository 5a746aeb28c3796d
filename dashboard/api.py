"""HTTP: the fleet as JSON, zones, density, health and Prometheus metrics (docs/api.md, "HTTP")."""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import Any

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from dashboard.push import EVENT_RIDES
from dashboard.service import Dashboard
from dashboard.zones import MAX_DRIVERS_LISTED, ZonesFull, ZoneWriteFailed, zone_json
from fleet import density, schema
from fleet.riders import riders_json
from fleet.schema import MAX_DRIVER_ID_CHARS, InvalidMessage
from fleet.state import TrackedDriver
from fleet.zones import MAX_ZONE_BYTES, encode_zone, new_zone_id, parse_zone

api = Blueprint("api", __name__)
# Drivers in a page of /api/drivers, unless asked, and at most: selecting a page from 100,000 drivers costs
# the green thread that ticks ~20-40 ms, so a caller cannot make one request cost a full listing.
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
# A page is streamed in chunks so that encoding it lets the frames and other requests through.
CHUNK_DRIVERS = 1000
# A POSTed zone: 1,000 vertices with every digit and some indentation; the app's bound is 16 KiB otherwise.
MAX_ZONE_BODY_BYTES = 4 * MAX_ZONE_BYTES
JSON_TYPES = ("application/json", "application/geo+json")
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def dashboard() -> Dashboard:
    return current_app.extensions["fleet_dashboard"]


@api.get("/api/drivers")
def list_drivers() -> Response:
    """One page of the drivers held, by driver id: ``limit`` of them after the id ``after`` (docs/api.md)."""
    try:
        limit, after = page_arguments(request.args.get("limit"), request.args.get("after"))
    except ValueError as e:
        return json_response({"error": str(e)}, 400)
    state = dashboard().state
    ids, next_after = page_of(map(attrgetter("driver_id"), state), limit, after)
    drivers = [driver for driver in map(state.get, ids) if driver is not None]  # all are: nothing ran in between
    head = f'{{"count":{len(state)},"next":{_json(next_after)},"drivers":['
    sleep = current_app.extensions["socketio"].sleep
    return _json_response_stream(_drivers_body(head, drivers, state.stale_after_s, sleep))


def page_arguments(limit: str | None, after: str | None) -> tuple[int, str | None]:
    """``limit`` and ``after`` of a request for a page of drivers, or ValueError saying what to send instead."""
    if limit is None:
        size = DEFAULT_PAGE
    elif limit.isascii() and limit.isdigit() and len(limit) <= len(str(MAX_PAGE)) and 1 <= int(limit) <= MAX_PAGE:
        size = int(limit)
    else:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE} (default {DEFAULT_PAGE})")
    if after is not None and len(after) > MAX_DRIVER_ID_CHARS:
        raise ValueError(f"after must be a driver id (at most {MAX_DRIVER_ID_CHARS} characters)")
    return size, after or None


def page_of(ids: Iterable[str], limit: int, after: str | None) -> tuple[list[str], str | None]:
    """The ``limit`` smallest ids greater than ``after``, and the id to ask after for the next page (None: last page).

    A heap of ``limit + 1`` ids: one pass over the ids held, no sort of them all.
    """
    candidates = ids if after is None else filter(after.__lt__, ids)
    smallest = heapq.nsmallest(limit + 1, candidates)
    if len(smallest) > limit:
        return smallest[:limit], smallest[limit - 1]
    return smallest, None


def _drivers_body(
    head: str, drivers: list[TrackedDriver], stale_after_s: float, sleep: Callable[[float], None]
) -> Iterator[str]:
    yield head
    for start in range(0, len(drivers), CHUNK_DRIVERS):
        now = time.time()
        chunk = drivers[start : start + CHUNK_DRIVERS]
        yield ("," if start else "") + ",".join(_json(driver_json(d, now, stale_after_s)) for d in chunk)
        sleep(0)
    yield "]}"


@api.get("/api/drivers/<path:driver_id>")
def one_driver(driver_id: str) -> Response:
    service = dashboard()
    driver = service.state.get(driver_id)
    if driver is None:
        return json_response({"error": "unknown driver", "driver_id": driver_id}, 404)
    body = driver_json(driver, time.time(), service.state.stale_after_s)
    body["trail"] = driver.trail_points()
    return json_response(body)


@api.get("/api/replay/timeline")
def replay_timeline() -> Response:
    """The replay time bar: the time the driver topic still holds and its fixes per bucket (docs/api.md)."""
    return json_response(dashboard().replays.timeline())


@api.get("/api/riders")
def list_riders() -> Response:
    """The rides on the map and the counts: the ``riders`` event without its Socket.IO envelope."""
    return json_response(riders_json(dashboard().riders, time.time(), EVENT_RIDES))


@api.get("/api/kafka")
def kafka() -> Response:
    """Brokers up and down, and per partition of each topic read: leader, replicas, ISR and offsets (docs/api.md)."""
    return json_response(dashboard().kafka_json())


@api.post("/api/zones")
def create_zone() -> Response:
    """Write a GeoJSON Feature to the zones topic as a new zone (a fresh id; the Feature's own ``id`` is ignored)."""
    if request.mimetype not in JSON_TYPES:
        # Not a "simple" request: another site's page cannot send it without a CORS preflight, which we never grant.
        detail = "send the GeoJSON Feature with Content-Type: application/json"
        return json_response({"error": "unsupported_media_type", "detail": detail}, 415)
    request.max_content_length = MAX_ZONE_BODY_BYTES
    try:
        feature = schema.decode_object(request.get_data(cache=False), MAX_ZONE_BODY_BYTES)
        zone = parse_zone(feature, new_zone_id())
        if len(encode_zone(zone)) > MAX_ZONE_BYTES:
            raise InvalidMessage(schema.TOO_LARGE, f"the zone takes over {MAX_ZONE_BYTES} bytes")
    except InvalidMessage as e:  # InvalidZone too: nothing is written
        return json_response({"error": e.reason, "detail": e.detail}, 400)
    try:
        dashboard().zone_writer.put(zone)
    except ZonesFull as e:
        return json_response({"error": "too_many_zones", "detail": str(e)}, 409)
    except ZoneWriteFailed as e:
        return json_response({"error": "kafka_unavailable", "detail": str(e)}, 503)
    return json_response({"zone_id": zone.zone_id}, 201)


@api.get("/api/zones")
def list_zones() -> Response:
    """Every zone held, with the drivers inside it by status (the ``zones`` event's body)."""
    return json_response(dashboard().payload())


@api.get("/api/zones/<path:zone_id>")
def one_zone(zone_id: str) -> Response:
    service = dashboard()
    zone = service.zones.get(zone_id)
    if zone is None:
        return json_response({"error": "unknown zone", "zone_id": zone_id}, 404)
    inside = service.inside.get(zone_id)
    return json_response({**zone_json(zone, inside), "drivers": inside.drivers[:MAX_DRIVERS_LISTED]})


@api.delete("/api/zones/<path:zone_id>")
def delete_zone(zone_id: str) -> Response:
    """Write the zone's tombstone; every process reading the topic forgets the zone."""
    service = dashboard()
    if zone_id not in service.zones:
        return json_response({"error": "unknown zone", "zone_id": zone_id}, 404)
    try:
        service.zone_writer.delete(zone_id)
    except ZoneWriteFailed as e:
        return json_response({"error": "kafka_unavailable", "detail": str(e)}, 503)
    return json_response({"zone_id": zone_id, "deleted": True})


@api.get("/api/zone-alerts")
def zone_alerts() -> Response:
    """The zone events held (at most 500, newest first), of one zone with ``?zone=<id>``, and the hour's counters."""
    zone_id = request.args.get("zone")
    alerts = dashboard().alerts
    events = alerts.newest(alerts.max_events)
    if zone_id is not None:
        events = [event for event in events if event["zone_id"] == zone_id]
    return json_response({"events": events, "counters": alerts.counters(time.time())})


@api.get("/api/density")
def supply_and_demand() -> Response:
    """Available drivers and waiting riders per H3 cell (docs/api.md)."""
    try:
        resolution = density.parse_resolution(request.args.get("resolution"))
        boundary = density.parse_flag("boundary", request.args.get("boundary"))
        bbox = density.parse_bbox(request.args.get("bbox"))
    except ValueError as e:
        return json_response({"error": str(e)}, 400)
    body = dashboard().density_text(resolution, boundary, bbox)
    return _not_cached(Response(body, mimetype="application/json"))


@api.get("/healthz")
def healthz() -> Response:
    healthy, body = dashboard().health()
    return json_response(body, 200 if healthy else 503)


@api.get("/metrics")
def metrics() -> Response:
    return Response(dashboard().metrics.render(), mimetype=CONTENT_TYPE_LATEST)


def driver_json(driver: TrackedDriver, now: float, stale_after_s: float) -> dict[str, Any]:
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


@api.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response | HTTPException:
    """Under /api/, an error is JSON like every other answer there (a 404 for ``/api/drivers/``, a 405...)."""
    if not request.path.startswith("/api/"):
        return error
    return json_response({"error": (error.name or "error").lower()}, error.code or 500)


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return _not_cached(Response(_json(body), status=status, mimetype="application/json"))


def _json(value: Any) -> str:
    """JSON in which text from Kafka can never close a script tag or open markup, nor fail to encode.

    ASCII only: every other character is a ``\\u`` escape, so even a lone surrogate (which UTF-8 cannot
    encode) or a line separator travels as plain ASCII.
    """
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).translate(_HTML_SAFE)


def _json_response_stream(chunks: Iterator[str]) -> Response:
    return _not_cached(Response(chunks, mimetype="application/json"))


def _not_cached(response: Response) -> Response:
    """The fleet changes every second (nosniff and the other security headers are on every response: app.py)."""
    response.headers["Cache-Control"] = "no-store"
    return response
