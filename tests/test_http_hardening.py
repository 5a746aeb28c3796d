"""What a client, a page on another site, or a hostile request can cost the dashboard, and which headers keep it safe.

The first tests need no broker: the snapshot rate limit (with a fake clock and a fake Socket.IO
server), the page selection of ``/api/drivers``, the Host allow-list and the redirect path. The others
run ``python -m dashboard`` against the running broker (the ``dashboard`` fixture of test_dashboard).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from typing import Any

import pytest
import requests
import socketio
from socketio import packet as socketio_packet

from dashboard import api, app, auth
from dashboard.audience import SNAPSHOT_MIN_INTERVAL_S
from dashboard.metrics import DashboardMetrics
from dashboard.push import Push
from dashboard.settings import DashboardSettings, host_names
from fleet.riders import Riders
from fleet.settings import SettingError
from fleet.state import FleetState
from fleet.throttle import Throttle
from tests import test_dashboard as dashboard_tests
from tests.conftest import ARTIFACTS
from tests.test_dashboard import fleet_fixes, producer, send_fixes, wait_until

dashboard = dashboard_tests.dashboard
clients = dashboard_tests.clients
TOKEN = "s3cret-token"

# --- without a broker ----------------------------------------------------------------------------------------------


class FakeServer:
    """What :class:`Push` uses of python-socketio's server: packets, sid lookup, Engine.IO queues and send."""

    packet_class = socketio_packet.Packet

    def __init__(self) -> None:
        self.manager = self
        self.eio = self
        self.sockets: dict[str, Any] = {}  # no queue: every client has drained
        self.sent: list[tuple[str, Any]] = []

    def eio_sid_from_sid(self, sid: str, namespace: str) -> str:
        return sid

    def send(self, eio_sid: str, part: Any) -> None:
        self.sent.append((eio_sid, part))

    def events(self, sid: str, name: str) -> int:
        return sum(1 for to, part in self.sent if to == sid and isinstance(part, str) and f'["{name}"' in part)


class FakeSocketIO:
    def __init__(self) -> None:
        self.server = FakeServer()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flood(push: Push, clock: Clock, seconds: float, tick_s: float = 0.1) -> None:
    """One client, ``flooder``, asks to resync before every tick; ``calm`` asks nothing."""
    for _ in range(round(seconds / tick_s)):
        push.request_snapshot("flooder")
        push.tick(time.time())
        clock.now += tick_s


def test_a_client_asking_to_resync_every_tick_gets_one_snapshot_a_second_the_first_at_once():
    sio, clock = FakeSocketIO(), Clock()
    push = Push(sio, FleetState(), "fleet", DashboardMetrics(), clock=clock)  # type: ignore[arg-type]
    push.add("flooder")
    push.add("calm")
    push.tick(time.time())
    assert sio.server.events("flooder", "snapshot") == 1, "the snapshot after connecting is not delayed"
    clock.now += 0.1
    flood(push, clock, seconds=3.0)
    assert sio.server.events("flooder", "snapshot") == 1 + 3
    assert sio.server.events("calm", "snapshot") == 1, "the other client is not touched"


def test_a_resync_long_after_the_last_snapshot_is_answered_at_the_next_tick():
    sio, clock = FakeSocketIO(), Clock()
    push = Push(sio, FleetState(), "fleet", DashboardMetrics(), clock=clock)  # type: ignore[arg-type]
    push.add("page")
    push.tick(time.time())
    clock.now += SNAPSHOT_MIN_INTERVAL_S
    push.request_snapshot("page")
    push.tick(time.time())
    assert sio.server.events("page", "snapshot") == 2


def test_a_resync_flood_gets_no_more_riders_events_than_snapshots():
    sio, clock = FakeSocketIO(), Clock()
    push = Push(sio, FleetState(), "fleet", DashboardMetrics(), Riders(), clock=clock)  # type: ignore[arg-type]
    push.add("flooder")
    push.tick(time.time())
    clock.now += 0.1
    flood(push, clock, seconds=0.8)  # no stats tick, no ride changed: riders only go with snapshots
    assert sio.server.events("flooder", "riders") == sio.server.events("flooder", "snapshot") == 1


def test_a_page_of_ids_is_the_smallest_after_the_given_one_and_names_the_next():
    ids = [f"d{n:02d}" for n in (7, 3, 11, 1, 9, 5, 2)]
    assert api.page_of(ids, 3, None) == (["d01", "d02", "d03"], "d03")
    assert api.page_of(ids, 3, "d03") == (["d05", "d07", "d09"], "d09")
    assert api.page_of(ids, 3, "d09") == (["d11"], None)
    assert api.page_of(ids, 7, None) == (sorted(ids), None), "a page exactly as long as what is left is the last"
    assert api.page_of(ids, 3, "zzz") == ([], None)


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "abc", "1.5", "", " 10", "1e3", "٣", "9" * 5000])
def test_a_limit_that_is_not_an_integer_from_1_to_10000_is_refused(limit):
    with pytest.raises(ValueError, match="limit must be an integer from 1 to 10000"):
        api.page_arguments(limit, None)


def test_page_arguments_default_to_1000_from_the_start_and_take_an_after_of_a_driver_ids_length():
    assert api.page_arguments(None, None) == (1000, None)
    assert api.page_arguments("10000", "x" * 64) == (10000, "x" * 64)
    with pytest.raises(ValueError, match="after must be a driver id"):
        api.page_arguments("10", "x" * 65)


def test_json_from_the_api_is_ascii_even_for_a_lone_surrogate_and_never_markup():
    text = api._json({"driver_id": "\ud800<b>\u202e\u2028"})
    assert text.isascii() and "<" not in text
    assert json.loads(text) == {"driver_id": "\ud800<b>\u202e\u2028"}


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/", "/"),
        ("/evil.example/x", "/evil.example/x"),
        ("//evil.example/x", "/evil.example/x"),
        ("/\\evil.example", "/evil.example"),
        ("/\\/\\//evil.example", "/evil.example"),
        ("/\t/evil.example", "/%09/evil.example"),
        ("/a b/\u00fc", "/a%20b/%C3%BC"),
    ],
)
def test_the_token_redirect_goes_to_a_path_of_this_host(path, location):
    assert auth.same_origin_path(path) == location


def test_allowed_hosts_default_to_the_bound_address_and_the_loopback_names():
    assert DashboardSettings(host="10.0.0.5").answered_hosts() == {"10.0.0.5", "localhost", "127.0.0.1", "::1"}
    listed = DashboardSettings.from_env(
        {"DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_ALLOWED_HOSTS": "Maps.Example.com:443"}
    )
    assert listed.answered_hosts() == {"maps.example.com", "0.0.0.0"}


def test_the_url_printed_for_a_browser_is_one_it_can_open():
    assert DashboardSettings(host="0.0.0.0", port=5000).url == "http://127.0.0.1:5000"
    assert DashboardSettings(host="::1", port=5001).url == "http://[::1]:5001"
    assert DashboardSettings(host="10.0.0.5", port=80).url == "http://10.0.0.5:80"


@pytest.mark.parametrize("raw", ["https://maps.example.com", "*.example.com", "maps.example.com/x", "a b"])
def test_an_allowed_host_that_is_not_a_host_name_is_refused(raw):
    with pytest.raises(SettingError, match="DASHBOARD_ALLOWED_HOSTS"):
        DashboardSettings.from_env({"DASHBOARD_ALLOWED_HOSTS": raw})


def test_host_names_compare_without_port_brackets_case_or_final_dot():
    assert host_names("[::1]:5000, LOCALHOST., 127.0.0.1:80,::1") == ("::1", "localhost", "127.0.0.1", "::1")
    guard = app.GuardedHosts(lambda environ, start: [], {"localhost", "::1"})
    assert guard.answers("localhost:5000", "/") and guard.answers("[::1]:5000", "/api/drivers")
    assert not guard.answers("evil.example", "/") and not guard.answers("evil.example", "/healthz")
    assert not guard.answers("10.1.2.3:5000", "/"), "an address not listed serves no page"
    assert guard.answers("10.1.2.3:5000", "/healthz") and guard.answers("[fd00::5]", "/metrics"), "probes by IP"


def test_the_security_headers_complete_a_response_without_overriding_its_own_policy():
    page = app.with_security_headers([("Content-Security-Policy", "default-src 'self'")])
    assert dict(page)["Content-Security-Policy"] == "default-src 'self'"
    assert dict(page)["X-Frame-Options"] == "DENY" and len(page) == len(app.SECURITY_HEADERS)


def test_a_throttle_lets_one_through_per_interval_and_counts_the_rest():
    clock = Clock()
    throttle = Throttle(60.0, clock)
    assert throttle.ready() == 0
    assert [throttle.ready() for _ in range(5)] == [None] * 5
    clock.now += 60.0
    assert throttle.ready() == 5


# --- a running dashboard ---------------------------------------------------------------------------------------------


def assert_secured(response: requests.Response, html: bool = False) -> None:
    headers = response.headers
    assert headers["X-Frame-Options"] == "DENY", response.url
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    if not html:
        assert policy == "default-src 'none'; frame-ancestors 'none'"


def raw_get(base: str, target: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """A GET with the request target exactly as given (requests would normalise ``//`` and backslashes)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def test_every_response_carries_the_anti_framing_headers_and_the_page_a_policy_of_hashes(
    kafka_bootstrap, make_topic, dashboard
):
    base = dashboard(kafka_bootstrap, make_topic("headers"))
    page = requests.get(base + "/", timeout=5)
    assert page.status_code == 200
    assert_secured(page, html=True)
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    polling = base + "/socket.io/?EIO=4&transport=polling"
    responses = [
        (404, requests.get(base + "/nowhere", timeout=5)),
        (405, requests.post(base + "/api/drivers", timeout=5)),
        (200, requests.get(base + "/api/drivers", timeout=5)),
        (400, requests.get(base + "/api/drivers?limit=0", timeout=5)),
        (200, requests.get(base + "/static/js/main.js", timeout=5)),
        (200, requests.get(polling, timeout=5)),  # Engine.IO's own answer, outside Flask's routing
        (400, requests.get(polling, headers={"Origin": "http://evil.example"}, timeout=5)),  # Engine.IO's refusal
    ]
    for status, response in responses:
        assert response.status_code == status, response.url
        assert_secured(response)


def test_a_foreign_host_gets_400_on_the_page_the_api_and_socketio_but_probes_by_address_get_through(
    kafka_bootstrap, make_topic, dashboard
):
    base = dashboard(kafka_bootstrap, make_topic("hosts"))
    port = urllib.parse.urlsplit(base).port
    for path in ("/", "/api/drivers", "/socket.io/?EIO=4&transport=polling", "/healthz"):
        refused = requests.get(base + path, headers={"Host": f"rebind.evil.example:{port}"}, timeout=5)
        assert refused.status_code == 400, path
        assert refused.headers["Content-Type"].startswith("text/plain") and "DASHBOARD_ALLOWED_HOSTS" in refused.text
        assert_secured(refused)
    upgrade = raw_get(
        base,
        "/socket.io/?EIO=4&transport=websocket",
        {
            "Host": "rebind.evil.example",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    assert upgrade.status == 400
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert requests.get(base + "/", headers={"Host": host}, timeout=5).status_code == 200, host
    assert requests.get(base + "/", headers={"Host": f"10.9.8.7:{port}"}, timeout=5).status_code == 400
    assert requests.get(base + "/healthz", headers={"Host": f"10.9.8.7:{port}"}, timeout=5).status_code in (200, 503)


def test_a_resync_flood_costs_at_most_one_snapshot_a_second(kafka_bootstrap, make_topic, dashboard, clients):
    topic = make_topic("flood")
    base = dashboard(kafka_bootstrap, topic)
    send_fixes(producer(kafka_bootstrap), topic, fleet_fixes(50, 1, time.time()))
    client = clients(base)
    wait_until(lambda: len(client.drivers()) == 50, 10, "the client holds the fleet")
    before = client.view.snapshots
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        client.sio.emit("resync")
        time.sleep(0.05)
    flooded = client.view.snapshots - before
    assert 2 <= flooded <= 4, f"{flooded} snapshots for 60 resyncs in 3 s"
    assert client.sio.connected, "asking to resync is allowed, only not answered at once"


def test_drivers_come_in_pages_by_id_with_the_id_to_ask_after(kafka_bootstrap, make_topic, dashboard):
    topic = make_topic("pages")
    base = dashboard(kafka_bootstrap, topic)
    send_fixes(producer(kafka_bootstrap), topic, fleet_fixes(25, 1, time.time()))
    wait_until(lambda: requests.get(base + "/api/drivers", timeout=2).json()["count"] == 25, 10, "25 drivers held")
    pages, after = [], None
    while True:
        query = {"limit": 10, **({"after": after} if after else {})}
        body = requests.get(base + "/api/drivers", params=query, timeout=5).json()
        assert body["count"] == 25
        pages.append([d["driver_id"] for d in body["drivers"]])
        after = body["next"]
        if after is None:
            break
        assert after == pages[-1][-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"drv-{i:05d}" for i in range(25)], "in id order, each once"
    whole = requests.get(base + "/api/drivers", timeout=5).json()
    assert len(whole["drivers"]) == 25 and whole["next"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=-5", "limit=10001", "limit=ten", "limit=2.5", "after=" + "x" * 65])
def test_a_bad_page_request_gets_400_saying_what_to_send(kafka_bootstrap, make_topic, dashboard, query):
    base = dashboard(kafka_bootstrap, make_topic("bad"))
    response = requests.get(f"{base}/api/drivers?{query}", timeout=5)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert "must be" in response.json()["error"]
    assert_secured(response)


def test_a_token_page_holds_no_token_is_never_stored_and_its_redirect_stays_on_this_host(
    kafka_bootstrap, make_topic, dashboard
):
    base = dashboard(kafka_bootstrap, make_topic("token"), DASHBOARD_TOKEN=TOKEN)
    browser = requests.Session()
    page = browser.get(f"{base}/?token={TOKEN}", timeout=5)
    assert page.status_code == 200 and page.url == base + "/"
    assert TOKEN not in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert_secured(page, html=True)
    listing = browser.get(base + "/api/drivers", timeout=5)
    assert listing.status_code == 200 and listing.headers["Cache-Control"] == "no-store"
    refused = requests.get(base + "/api/drivers", timeout=5)
    assert refused.status_code == 401 and refused.headers["Cache-Control"] == "no-store"
    assert_secured(refused)

    cookie = {"Cookie": f"dashboard_token={TOKEN}"}
    sio = socketio.Client(reconnection=False)
    sio.connect(base, headers=cookie, wait_timeout=10)  # what the page does: the cookie alone, no auth payload
    sio.disconnect()

    ours = urllib.parse.urlsplit(base).netloc
    for target in ("//evil.example/x", "/\\evil.example/x", "/%2F%2Fevil.example/x", "/%5C/evil.example", "/%09/evil"):
        redirect = raw_get(base, f"{target}?token={TOKEN}&zoom=3")
        assert redirect.status == 302, target
        location = redirect.getheader("Location")
        assert location.startswith("/") and location[1:2] not in ("/", "\\") and location.isprintable(), location
        assert urllib.parse.urlsplit(urllib.parse.urljoin(base + "/", location)).netloc == ours
        assert location.endswith("?zoom=3")


def test_a_client_sending_an_unknown_event_or_an_oversized_one_is_disconnected_and_logged_once(
    kafka_bootstrap, make_topic, dashboard, clients, request
):
    base = dashboard(kafka_bootstrap, make_topic("unknown"))
    good = clients(base)
    strangers = [clients(base) for _ in range(3)]
    for stranger in strangers:
        stranger.sio.emit("subscribe", {"all": True})
    oversized = clients(base)
    oversized.sio.emit("resync", "x" * 2048)  # over the 1 KiB a message may hold
    wait_until(lambda: not any(s.sio.connected for s in strangers), 5, "each client sending an unknown event is closed")
    wait_until(lambda: not oversized.sio.connected, 5, "a client sending an oversized message is closed")
    good.sio.emit("resync")
    time.sleep(0.5)
    assert good.sio.connected, "a client sending resync stays"
    log = (ARTIFACTS / f"dashboard-{request.node.name[:60]}.log").read_text()
    assert log.count("not an event of ours") == 1, log
