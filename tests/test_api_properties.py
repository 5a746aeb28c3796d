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

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.app import create_app
from dashboard.settings import DashboardSettings
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


@settings(max_examples=100)
@given(
    st.one_of(texts, st.sampled_from(["resync", "connect", "disconnect", "message", "*"])),
    st.lists(st.one_of(st.none(), st.integers(), texts, st.binary(max_size=64)), max_size=3),
)
def test_any_socketio_event_is_answered_or_closes_its_client_and_never_breaks_the_server(app, event, payload):
    socketio = app.extensions["socketio"]
    client = socketio.test_client(app)
    assert client.is_connected()
    client.emit(event, *payload)
    assert client.is_connected() == (event == "resync"), "only resync is ours: anything else closes the client"
    if client.is_connected():
        client.disconnect()
    healthy = socketio.test_client(app)
    assert healthy.is_connected(), "the server still takes new clients"
    healthy.disconnect()
