"""Every endpoint answers any request with a whole, ASCII JSON body and a documented status; no event crashes a client.

Hypothesis draws what a careless or hostile caller could send: any driver id in the path (surrogates, controls,
RTL, markup, `..`), any `limit` and `after`, any Socket.IO event name and payload. The application is the real
one (``create_app``) with a fleet filled through the real decoder; Flask's and Flask-SocketIO's test clients
stand in for the network, so no broker is needed: nothing here reads Kafka.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import warnings
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.app import create_app
from dashboard.settings import DashboardSettings
from dashboard.tracks import ReadsBusy, ReadUnavailable, ScanResult
from fleet import decode
from fleet.decode import Refusal

ODD_IDS = ["drv-1", "101", "\u05d0\u05d1-\u202e-7", "<img src=x onerror=alert(1)>", "\U0001f695 taxi", "a/b", "%2F"]
texts = st.text(alphabet=st.characters(codec=None), max_size=80)


@pytest.fixture(scope="module")
def app():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's deprecation banner on import; dashboard/asyncmode.py answers it
        app = create_app(DashboardSettings(bootstrap_servers="127.0.0.1:1", dead_letter=False))
    service = app.extensions["fleet_dashboard"]
    now = time.time()
    for n, driver_id in enumerate(ODD_IDS):
        value = json.dumps({"driver_id": driver_id, "latitude": 40.7, "longitude": -73.9, "timestamp": now}).encode()
        fix = decode.FIXES(None, value, now)
        assert not isinstance(fix, Refusal)
        service.state.apply(fix, 0, n, now)
    return app


def assert_whole_json(response, statuses: set[int]) -> dict:
    assert response.status_code in statuses, (response.status_code, response.data[:200])
    assert response.data.isascii(), "JSON from the API is ASCII: no text can break it"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    return json.loads(response.data)


@settings(max_examples=300)
@given(st.one_of(texts, st.sampled_from(ODD_IDS)))
def test_any_driver_id_in_the_path_gets_the_driver_or_a_404_as_whole_json(app, driver_id):
    path = "/api/drivers/" + urllib.parse.quote(driver_id.encode("utf-8", "surrogatepass"), safe="")
    with app.test_client() as client:
        response = client.get(path)
    body = assert_whole_json(response, {200, 404})
    if response.status_code == 200:
        assert body["driver_id"] in ODD_IDS and body["trail"]


@settings(max_examples=300)
@given(st.one_of(st.none(), texts, st.integers(-5, 20_000).map(str)), st.one_of(st.none(), texts))
def test_any_page_request_gets_a_page_or_a_400_as_whole_json(app, limit, after):
    query = {k: v.encode("utf-8", "surrogatepass") for k, v in (("limit", limit), ("after", after)) if v is not None}
    with app.test_client() as client:
        response = client.get("/api/drivers?" + urllib.parse.urlencode(query))
    body = assert_whole_json(response, {200, 400})
    if response.status_code == 200:
        assert body["count"] == len(ODD_IDS) and len(body["drivers"]) <= len(ODD_IDS)
    else:
        assert set(body) == {"error"}


def test_riders_health_and_metrics_answer_without_kafka(app):
    with app.test_client() as client:
        assert_whole_json(client.get("/api/riders"), {200})
        kafka = assert_whole_json(client.get("/api/kafka"), {200})
        assert kafka["error"] == "waiting for Kafka's first answer" and kafka["brokers"] == []
        assert assert_whole_json(client.get("/healthz"), {503})["status"] == "unavailable"
        assert client.get("/metrics").status_code == 200


EVENT_NAMES = ["resync", "live", "replay", "replay_control", "connect", "disconnect", "message", "*"]


@settings(max_examples=100)
@given(
    st.one_of(texts, st.sampled_from(EVENT_NAMES)),
    st.lists(st.one_of(st.none(), st.integers(), texts, st.binary(max_size=64)), max_size=3),
)
def test_any_socketio_event_is_answered_or_closes_its_client_and_never_breaks_the_server(app, event, payload):
    socketio = app.extensions["socketio"]
    client = socketio.test_client(app)
    assert client.is_connected()
    client.emit(event, *payload)
    # resync and live take no payload (anything sent along is ignored); replay's events take exactly theirs
    # (fleet/replay.py, property-tested in tests/test_replay.py), which these payloads never are.
    ours = event in ("resync", "live")
    assert client.is_connected() == ours, "anything else than our events and payloads closes the client"
    if client.is_connected():
        client.disconnect()
    healthy = socketio.test_client(app)
    assert healthy.is_connected(), "the server still takes new clients"
    healthy.disconnect()


# ---- driver tracks and exported maps: Kafka's part is a stand-in that hands over one fix per key asked for


def one_fix_per_read(bootstrap, plan, take, sleep):
    """A read of ``plan`` that finds one fix of the driver asked for (of each odd id for the fleet), mid-window."""
    at = (plan.since_ms + plan.until_ms) / 2000
    keys = [plan.key] if plan.key is not None else [i.encode("utf-8", "surrogatepass") for i in ODD_IDS]
    for key in keys:
        body = {
            "driver_id": key.decode("utf-8", "surrogatepass"),
            "latitude": 40.7,
            "longitude": -73.9,
            "timestamp": at,
        }
        take(SimpleNamespace(key=key, value=json.dumps(body).encode(), offset=0, timestamp=int(at * 1000)))
    return ScanResult([0], len(keys))


@pytest.fixture(scope="module")
def reads(app):
    tracks = app.extensions["fleet_dashboard"].tracks
    tracks.scan = one_fix_per_read
    yield tracks
    assert tracks.active == 0, "every read gave its slot back"


times = st.one_of(st.none(), texts, st.floats(0, 2e9).map(str), st.sampled_from(["2026-12-01T18:00:00Z", "-1"]))


@settings(max_examples=300)
@given(st.one_of(texts, st.sampled_from(ODD_IDS)), times, times)
def test_any_track_request_gets_a_track_or_a_400_as_whole_json(app, reads, driver_id, start, end):
    path = "/api/drivers/" + urllib.parse.quote(driver_id.encode("utf-8", "surrogatepass"), safe="") + "/track"
    query = {k: v.encode("utf-8", "surrogatepass") for k, v in (("from", start), ("to", end)) if v is not None}
    with app.test_client() as client:
        response = client.get(path + "?" + urllib.parse.urlencode(query))
    body = assert_whole_json(response, {200, 400, 404})  # 404: an empty id, no route
    if response.status_code == 200:
        assert 0 < body["to"] - body["from"] <= 86400 and len(body["points"]) <= 1
    else:
        assert set(body) == {"error"} and body["error"]


@settings(max_examples=100)
@given(
    st.one_of(st.none(), texts, st.sampled_from(ODD_IDS)), times, times, times, st.sampled_from([None, "0", "1", "2"])
)
def test_any_export_request_gets_a_file_or_a_400(app, reads, driver_id, start, end, at, inline):
    fields = (("driver", driver_id), ("from", start), ("to", end), ("at", at), ("inline", inline))
    query = {k: v.encode("utf-8", "surrogatepass") for k, v in fields if v is not None}
    with app.test_client() as client:
        response = client.get("/export/map.html?" + urllib.parse.urlencode(query))
    if response.status_code == 200:
        assert response.mimetype == "text/html"
        disposition = response.headers["Content-Disposition"]
        assert disposition.isascii() and disposition.startswith('attachment; filename="')
        assert "<script>alert" not in response.get_data(as_text=True)
    else:
        assert set(assert_whole_json(response, {400})) == {"error"}


@pytest.mark.parametrize(
    ("error", "status"), [(ReadsBusy("4 reads under way"), 429), (ReadUnavailable("no Kafka"), 503)]
)
def test_too_many_reads_get_429_and_kafka_away_503(app, reads, error, status):
    def failing(*_args):
        raise error

    reads.scan = failing
    try:
        with app.test_client() as client:
            for path in ("/api/drivers/drv-1/track", "/export/map.html?driver=drv-1", "/export/map.html?at=1795645154"):
                response = client.get(path)
                assert assert_whole_json(response, {status})["error"] == str(error)
                assert (response.headers.get("Retry-After") == "2") == (status == 429)
    finally:
        reads.scan = one_fix_per_read


# ---- zones and density: Kafka's part of a zone write is a stand-in that keeps what would be written


@pytest.fixture(scope="module")
def zone_writes(app):
    """What the zone writer sent, as (zone id, value or None); nothing reaches Kafka."""
    writes: list[tuple[str, bytes | None]] = []
    writer = app.extensions["fleet_dashboard"].zone_writer
    writer.send = lambda zone_id, value: writes.append((zone_id, value))
    return writes


coordinates = st.one_of(st.floats(-200, 200), st.floats(), st.integers(-200, 200))
positions = st.lists(coordinates, min_size=0, max_size=3)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), texts),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)),
    max_leaves=20,
)
geometries = st.one_of(
    st.fixed_dictionaries({"type": st.just("Point"), "coordinates": positions}),
    st.fixed_dictionaries(
        {"type": st.just("Polygon"), "coordinates": st.lists(st.lists(positions, max_size=8), max_size=2)}
    ),
    json_values,
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(texts, st.sampled_from(ODD_IDS), json_values),
        "radius_m": st.one_of(st.floats(), st.integers(), texts),
        "dwell_s": st.one_of(st.floats(), st.integers(), texts),
        "hysteresis_m": st.one_of(st.floats(), st.integers(), texts),
    },
)
SQUARE = [[-73.99, 40.74], [-73.97, 40.74], [-73.97, 40.76], [-73.99, 40.76], [-73.99, 40.74]]
valid_features = st.builds(
    lambda name, circle: {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-73.98, 40.75]}
        if circle
        else {"type": "Polygon", "coordinates": [SQUARE]},
        "properties": {"name": name, "radius_m": 250},
    },
    st.sampled_from(ODD_IDS),
    st.booleans(),
)
features = st.one_of(
    valid_features,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Feature", "feature"]), "geometry": geometries, "properties": properties},
        optional={"id": json_values},
    ),
    json_values,
)


@settings(max_examples=300)
@given(features, st.sampled_from(["application/json", "application/geo+json", "text/plain"]))
def test_any_zone_posted_is_written_with_201_or_refused_whole_with_nothing_written(app, zone_writes, feature, mimetype):
    written = len(zone_writes)
    body = json.dumps(feature, allow_nan=True).encode("utf-8", "surrogatepass")
    with app.test_client() as client:
        response = client.post("/api/zones", data=body, headers={"Content-Type": mimetype})
    answer = assert_whole_json(response, {201, 400, 415})
    if response.status_code == 201:
        assert mimetype != "text/plain" and len(zone_writes) == written + 1
        zone_id, value = zone_writes[-1]
        assert zone_id == answer["zone_id"] and value is not None
        with app.test_client() as client:
            listed = assert_whole_json(client.get("/api/zones/" + zone_id), {200})
            assert listed["zone_id"] == zone_id and listed["drivers"] == []
            assert assert_whole_json(client.delete("/api/zones/" + zone_id), {200})["deleted"] is True
        assert zone_writes[-1] == (zone_id, None), "a tombstone"
    else:
        assert set(answer) == {"error", "detail"} and answer["error"] and answer["detail"]
        assert len(zone_writes) == written, "a refused zone writes nothing"


@settings(max_examples=200)
@given(st.one_of(texts, st.sampled_from(ODD_IDS)), st.sampled_from(["GET", "DELETE"]))
def test_any_zone_id_in_the_path_gets_the_zone_or_a_404_as_whole_json(app, zone_writes, zone_id, method):
    path = "/api/zones/" + urllib.parse.quote(zone_id.encode("utf-8", "surrogatepass"), safe="")
    with app.test_client() as client:
        response = client.open(path, method=method)
    body = assert_whole_json(response, {404, 405})  # 405: an empty id is the list, which takes no DELETE
    assert body["error"]


bboxes = st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=5).map(
    lambda values: ",".join(map(str, values))
)


@settings(max_examples=200)
@given(
    st.one_of(st.none(), texts, st.integers(-3, 20).map(str)),
    st.one_of(st.none(), texts, st.just("1")),
    st.one_of(st.none(), texts, bboxes),
)
def test_any_density_request_gets_cells_or_a_400_as_whole_json(app, resolution, boundary, bbox):
    fields = (("resolution", resolution), ("boundary", boundary), ("bbox", bbox))
    query = {k: v.encode("utf-8", "surrogatepass") for k, v in fields if v is not None}
    with app.test_client() as client:
        response = client.get("/api/density?" + urllib.parse.urlencode(query))
    body = assert_whole_json(response, {200, 400})
    if response.status_code == 200:
        assert body["resolution"] in (7, 8, 9) and body["truncated"] is False
        assert body["cells"] == []  # the fleet here is all drivers without a status: no supply, no riders
    else:
        assert set(body) == {"error"}


@settings(max_examples=100)
@given(st.one_of(st.none(), texts, st.sampled_from(ODD_IDS)))
def test_any_zone_alerts_request_gets_whole_json(app, zone):
    query = {} if zone is None else {"zone": zone.encode("utf-8", "surrogatepass")}
    with app.test_client() as client:
        body = assert_whole_json(client.get("/api/zone-alerts?" + urllib.parse.urlencode(query)), {200})
    assert body == {"events": [], "counters": {}}


def test_zones_refused_past_zones_max_get_409(app, zone_writes):
    service = app.extensions["fleet_dashboard"]
    writer = service.zone_writer
    square = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-73.9, 40.7]}}
    made = []
    limit, writer.max_zones = writer.max_zones, len(service.zones) + 2
    try:
        with app.test_client() as client:
            for n in range(3):
                feature = {**square, "properties": {"name": f"z{n}", "radius_m": 100}}
                made.append(client.post("/api/zones", json=feature))
            assert [r.status_code for r in made] == [201, 201, 409]
            assert assert_whole_json(made[-1], {409})["error"] == "too_many_zones"
            for response in made[:2]:
                assert client.delete("/api/zones/" + response.get_json()["zone_id"]).status_code == 200
    finally:
        writer.max_zones = limit
