"""A hostile producer: records that break the contracts in every way we know of, each with the reason it
must be refused for, and valid records that only look odd (and must be served).

Used by the live fuzz tests (tests/test_poison.py) and by ``python -m bench.pipeline --hostile``. Every
class of docs/reliability.md ("Bad input") is here; ``tests/test_poison.py`` checks that each one is
refused by the decoders for exactly the reason given, so the expectations cannot drift from the code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fleet.rides import request_key


@dataclass(frozen=True)
class Hostile:
    kind: str  # what is wrong with it, for reports
    key: bytes | None
    value: bytes | None
    reason: str  # what the decoder must refuse it as
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _json(message: dict) -> bytes:
    """Compact JSON; odd characters as \\u escapes, the way a JSON library writes a lone surrogate."""
    return json.dumps(message, separators=(",", ":")).encode()


def _digits(n: int) -> str:
    return "1" + "0" * (n - 1)


def _raw_number(message: dict, field_name: str, number: str) -> bytes:
    """``message`` as JSON with ``field_name`` set to a number literal Python's json would not write."""
    return _json({**message, field_name: "@@"}).replace(b'"@@"', number.encode())


# ---- driver-location

FixMaker = Callable[[random.Random, float], Hostile]


def _fix(rng: random.Random, now: float, driver_id: str | None = None) -> dict:
    return {
        "driver_id": driver_id or f"hostile-{rng.randrange(10**6):06d}",
        "latitude": round(rng.uniform(40.6, 40.9), 6),
        "longitude": round(rng.uniform(-74.05, -73.75), 6),
        "timestamp": now,
    }


def _keyed(kind: str, message: dict, reason: str) -> Hostile:
    return Hostile(kind, str(message.get("driver_id", "x")).encode("utf-8", "surrogatepass"), _json(message), reason)


FIX_CLASSES: dict[str, FixMaker] = {
    "not JSON": lambda r, n: Hostile("not JSON", b"d", b"lat=40.7&lon=-73.9", "not_json"),
    "not UTF-8": lambda r, n: Hostile("not UTF-8", b"d", b'{"driver_id":"\xff\xfe"}', "not_json"),
    "tombstone": lambda r, n: Hostile("tombstone", b"d", None, "not_json"),
    "a JSON array": lambda r, n: Hostile("a JSON array", None, b"[40.7,-73.9]", "not_object"),
    "17 KB value": lambda r, n: _keyed("17 KB value", {**_fix(r, n), "pad": "x" * 17_000}, "too_large"),
    "nested 5,000 deep": lambda r, n: Hostile("nested 5,000 deep", None, b"[" * 5000 + b"]" * 5000, "too_deep"),
    "nested object in a fix": lambda r, n: Hostile(
        "nested object in a fix", None, b'{"a":' * 2000 + b"1" + b"}" * 2000, "too_deep"
    ),
    "400-digit latitude": lambda r, n: Hostile(
        "400-digit latitude", None, _raw_number(_fix(r, n), "latitude", _digits(400)), "bad_latitude"
    ),
    "5,000-digit longitude": lambda r, n: Hostile(
        "5,000-digit longitude", None, _raw_number(_fix(r, n), "longitude", _digits(5000)), "not_json"
    ),
    "NaN latitude": lambda r, n: Hostile(
        "NaN latitude", None, _raw_number(_fix(r, n), "latitude", "NaN"), "bad_latitude"
    ),
    "1e999 speed": lambda r, n: Hostile(
        "1e999 speed", None, _raw_number(_fix(r, n), "speed_kmh", "1e999"), "bad_speed"
    ),
    "latitude 200": lambda r, n: _keyed("latitude 200", {**_fix(r, n), "latitude": 200}, "bad_latitude"),
    "latitude as text": lambda r, n: _keyed("latitude as text", {**_fix(r, n), "latitude": "40.7"}, "bad_latitude"),
    "no timestamp": lambda r, n: _keyed(
        "no timestamp", {k: v for k, v in _fix(r, n).items() if k != "timestamp"}, "missing_field"
    ),
    "lone surrogate id": lambda r, n: _keyed("lone surrogate id", _fix(r, n, "drv-\ud800"), "bad_driver_id"),
    "control character id": lambda r, n: _keyed("control character id", _fix(r, n, "drv-\u0007"), "bad_driver_id"),
    "65-character id": lambda r, n: _keyed("65-character id", _fix(r, n, "d" * 65), "bad_driver_id"),
    "10**70 id": lambda r, n: Hostile(
        "10**70 id", None, _raw_number(_fix(r, n), "driver_id", _digits(71)), "bad_driver_id"
    ),
    "250 s in the future": lambda r, n: _keyed(
        "250 s in the future", {**_fix(r, n), "timestamp": n + 250}, "future_timestamp"
    ),
    "milliseconds": lambda r, n: _keyed("milliseconds", {**_fix(r, n), "timestamp": n * 1000}, "future_timestamp"),
    "negative timestamp": lambda r, n: _keyed("negative timestamp", {**_fix(r, n), "timestamp": -1}, "bad_timestamp"),
    "key of another driver": lambda r, n: Hostile(
        "key of another driver", b"attacker", _json(_fix(r, n, "victim")), "key_mismatch"
    ),
    "key not UTF-8": lambda r, n: Hostile("key not UTF-8", b"\xff\xfe", _json(_fix(r, n)), "key_mismatch"),
    "heading 720": lambda r, n: _keyed("heading 720", {**_fix(r, n), "heading": 720}, "bad_heading"),
    "status parked": lambda r, n: _keyed("status parked", {**_fix(r, n), "status": "parked"}, "bad_status"),
    "status a list": lambda r, n: _keyed("status a list", {**_fix(r, n), "status": ["available"]}, "bad_status"),
    "seq 2**64": lambda r, n: _keyed("seq 2**64", {**_fix(r, n), "seq": 2**64}, "bad_seq"),
}


def hostile_fixes(rng: random.Random, now: float) -> Iterator[Hostile]:
    """Hostile driver-location records, every class in turn."""
    while True:
        for make in FIX_CLASSES.values():
            yield make(rng, now)


# ---- ride-requests


def _request(rng: random.Random, now: float, **fields: object) -> dict:
    n = rng.randrange(10**9)
    return {
        "request_id": f"hostile-{n}",
        "rider_id": f"rider-{n}",
        "latitude": round(rng.uniform(40.6, 40.9), 6),
        "longitude": round(rng.uniform(-74.05, -73.75), 6),
        "timestamp": now,
        **fields,
    }


def _request_record(kind: str, message: dict, reason: str) -> Hostile:
    return Hostile(kind, b"nyc", _json(message), reason)


REQUEST_CLASSES: dict[str, FixMaker] = {
    "not JSON": lambda r, n: Hostile("not JSON", b"nyc", b"please send a car", "not_json"),
    "nested 5,000 deep": lambda r, n: Hostile("nested 5,000 deep", b"nyc", b"[" * 5000 + b"]" * 5000, "too_deep"),
    "400-digit latitude": lambda r, n: Hostile(
        "400-digit latitude", b"nyc", _raw_number(_request(r, n), "latitude", _digits(400)), "bad_latitude"
    ),
    "no rider": lambda r, n: _request_record(
        "no rider", {k: v for k, v in _request(r, n).items() if k != "rider_id"}, "missing_field"
    ),
    "lone surrogate request id": lambda r, n: _request_record(
        "lone surrogate request id", _request(r, n, request_id="req-\udfff"), "bad_request_id"
    ),
    "control character rider": lambda r, n: _request_record(
        "control character rider", _request(r, n, rider_id="r\u0000"), "bad_rider_id"
    ),
    "250 s in the future": lambda r, n: _request_record(
        "250 s in the future", _request(r, n, timestamp=n + 250), "future_timestamp"
    ),
}


def hostile_requests(rng: random.Random, now: float) -> Iterator[Hostile]:
    while True:
        for make in REQUEST_CLASSES.values():
            yield make(rng, now)


def odd_but_valid_requests(rng: random.Random, now: float) -> list[tuple[bytes, bytes, str]]:
    """(key, value, request id) of requests the contract allows that once stalled or could stall matching:
    the poles, the antimeridian. Each must be answered (no driver is there: ``no_driver``)."""
    points = [(90.0, 0.0), (-90.0, 135.0), (89.99999, -180.0), (0.0, 180.0), (-0.5, -179.99999), (71.0, 179.9999)]
    requests = []
    for i, (lat, lon) in enumerate(points):
        message = _request(rng, now, request_id=f"odd-{rng.randrange(10**9)}-{i}", latitude=lat, longitude=lon)
        requests.append((request_key(lat, lon), _json(message), message["request_id"]))
    return requests


# ---- ride-matches (written by someone who is not the matcher)


def _match(rng: random.Random, now: float, **fields: object) -> dict:
    request = _request(rng, now)
    return {
        **request,
        "outcome": "matched",
        "requested_at": now - 1,
        "driver_id": "drv-x",
        "distance_m": 100.0,
        "eta_s": 15,
        "driver_latitude": request["latitude"],
        "driver_longitude": request["longitude"],
        **fields,
    }


def _match_record(kind: str, message: dict, reason: str) -> Hostile:
    return Hostile(kind, str(message["request_id"]).encode(), _json(message), reason)


MATCH_CLASSES: dict[str, FixMaker] = {
    "eta 10**400": lambda r, n: Hostile(
        "eta 10**400", None, _raw_number(_match(r, n), "eta_s", _digits(400)), "bad_eta"
    ),
    "eta a year": lambda r, n: _match_record("eta a year", _match(r, n, eta_s=365 * 86400), "bad_eta"),
    "distance 1e308": lambda r, n: _match_record("distance 1e308", _match(r, n, distance_m=1e308), "bad_distance"),
    "outcome teleported": lambda r, n: _match_record(
        "outcome teleported", _match(r, n, outcome="teleported"), "bad_outcome"
    ),
    "key of another request": lambda r, n: Hostile(
        "key of another request", b"someone-else", _json(_match(r, n)), "key_mismatch"
    ),
    "nested 5,000 deep": lambda r, n: Hostile("nested 5,000 deep", None, b"[" * 5000 + b"]" * 5000, "too_deep"),
}


def hostile_matches(rng: random.Random, now: float) -> Iterator[Hostile]:
    while True:
        for make in MATCH_CLASSES.values():
            yield make(rng, now)
