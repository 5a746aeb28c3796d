"""HTTP for the past: a driver's track as JSON, and a map to share as a file (docs/api.md, "Driver tracks").

``GET /api/drivers/<id>/track`` and ``GET /export/map.html``. Both read Kafka through
:class:`dashboard.tracks.TrackReads` (bounded, at most a few at once) and answer every mistake of the
caller with a JSON error: 400 for a bad id or window, 429 when enough reads are under way, 503 when Kafka
does not answer. The access token guards them like the rest (dashboard/auth.py).
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, request

from dashboard.api import dashboard, json_response
from dashboard.export import MAX_FLEET_MARKERS, Assets, Located, fleet_file, track_file
from dashboard.tracks import ReadsBusy, ReadUnavailable, driver_id_from_path, newest
from fleet.track import WindowError, compact_utc, parse_time, parse_window, safe_file_part, track_json

share = Blueprint("share", __name__)
# Seconds a caller refused for too many reads is asked to wait (a read lasts a second or two).
RETRY_AFTER_S = 2


@share.get("/api/drivers/<path:driver_id>/track")
def driver_track(driver_id: str) -> Response:
    """The driver's fixes from ``from`` to ``to`` (default: the last 15 minutes), read back from Kafka."""
    try:
        checked = driver_id_from_path(driver_id)
        window = parse_window(request.args.get("from"), request.args.get("to"), time.time())
    except ValueError as e:
        return json_response({"error": str(e)}, 400)
    try:
        track, report = dashboard().tracks.track(checked, window)
    except ReadsBusy as e:
        return _busy(str(e))
    except ReadUnavailable as e:
        return json_response({"error": str(e)}, 503)
    return json_response({**track_json(track), "read": report.json()})


@share.get("/export/map.html")
def export_map() -> Response:
    """A standalone HTML map to download: ``?driver=<id>&from=&to=`` a track, else the fleet (now, or ``?at=``)."""
    inline = request.args.get("inline", "0")
    if inline not in ("0", "1"):
        return json_response(
            {"error": "inline must be 0 (Leaflet from a public CDN) or 1 (everything in the file)"}, 400
        )
    settings = dashboard().settings
    assets = Assets(inline == "1", settings.tile_url, settings.tile_attribution)
    try:
        if "driver" in request.args:
            return _track_export(request.args["driver"], assets)
        return _fleet_export(request.args.get("at"), assets)
    except ValueError as e:
        return json_response({"error": str(e)}, 400)
    except ReadsBusy as e:
        return _busy(str(e))
    except ReadUnavailable as e:
        return json_response({"error": str(e)}, 503)


def _track_export(driver_id: str, assets: Assets) -> Response:
    checked = driver_id_from_path(driver_id)
    window = parse_window(request.args.get("from"), request.args.get("to"), time.time())
    track, _ = dashboard().tracks.track(checked, window)
    name = f"track-{safe_file_part(checked)}-{compact_utc(window.start)}-{compact_utc(window.end)}.html"
    return _download(track_file(track, assets), name)


def _fleet_export(at_text: str | None, assets: Assets) -> Response:
    service = dashboard()
    now = time.time()
    drivers: list[Located]
    if at_text:
        at = parse_time(at_text, "at")
        if at > now:
            raise WindowError("at is in the future: leave it out for the fleet now")
        drivers = list(service.tracks.fleet_at(at)[0])
    else:
        at = now
        drivers = list(service.state)
    shown = newest(drivers, MAX_FLEET_MARKERS)
    body = fleet_file(shown, at, len(drivers) - len(shown), service.settings.area_box, assets)
    return _download(body, f"fleet-{compact_utc(at)}.html")


def _download(html: str, filename: str) -> Response:
    response = Response(html, mimetype="text/html")
    # The name is ASCII letters, digits, "._-" only (fleet.track.safe_file_part): nothing to quote or escape.
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _busy(message: str) -> Response:
    response = json_response({"error": message}, 429)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response
