"""Driver tracks and shared maps against a real broker and a real dashboard process.

One topic of 3 partitions holds fixes this module produces itself, with fixed timestamps two hours in the
past and Kafka record times (CreateTime) it chooses: the driver whose track is asked for, another driver on
the same partition, records the decoder refuses, a fix sent late, and one from a producer whose clock is
two hours off. Then the dashboard reads them back.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from kafka import KafkaAdminClient, KafkaProducer
from playwright.sync_api import sync_playwright

from bench.common import CHROMIUM, CHROMIUM_ARGS
from bus.partitioning import key_partition
from dashboard.tracks import ScanPlan, ScanResult, TrackReads, scan_kafka
from fleet.schema import Fix, encode_fix
from fleet.track import Window
from tests.conftest import ARTIFACTS
from tests.stack import Topics, start_dashboard

PARTITIONS = 3
TARGET = "drv-track-1"
HOSTILE = "<script>alert('id')</script>"
# Two hours ago, on a whole minute: every time below is this plus whole seconds.
BASE = float(int(time.time() - 7200) // 60 * 60)


def same_partition_as(driver_id: str, prefix: str) -> str:
    """Another driver id whose fixes the default partitioner puts on ``driver_id``'s partition."""
    target = key_partition(driver_id.encode(), PARTITIONS)
    return next(f"{prefix}{n}" for n in range(1000) if key_partition(f"{prefix}{n}".encode(), PARTITIONS) == target)


NEIGHBOUR = same_partition_as(TARGET, "drv-next-")


@dataclass
class Sent:
    """What this module wrote: the target's fixes that a track of [BASE, BASE + 600] must return, in time order."""

    expected: list[list[float]]
    partition: int


def produce(bootstrap: str, topic: str) -> Sent:
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=5)

    def send(key: str | None, value: bytes, record_time: float) -> int:
        raw_key = None if key is None else key.encode()
        return producer.send(topic, key=raw_key, value=value, timestamp_ms=int(record_time * 1000)).get(30).partition

    # A producer whose clock is two hours behind, first in the log: the read starts at the first record stamped
    # within the margin of the window's start, after this one, so its fix is missed (docs/api.md says so).
    send(TARGET, encode_fix(Fix(TARGET, 40.77, -73.97, BASE + 300.5)), BASE + 300.5 - 7200)
    expected = []
    partition = -1
    for i in range(60):  # every 10 s for 10 minutes, eastwards; the second half sent before the first
        n = (i + 30) % 60
        fix = Fix(TARGET, 40.75, round(-73.99 + n * 1e-4, 6), BASE + n * 10, 90.0, 3.6, "available", n)
        partition = send(TARGET, encode_fix(fix), fix.timestamp)
        expected.append([fix.latitude, fix.longitude, fix.timestamp])
    for n in range(0, 600, 5):  # the neighbour, interleaved on the same partition: never in the target's track
        send(NEIGHBOUR, encode_fix(Fix(NEIGHBOUR, 40.7, -74.0, BASE + n)), BASE + n)
    send(TARGET, encode_fix(Fix(TARGET, 40.0, -74.0, BASE - 30)), BASE - 30)  # before the window
    send(TARGET, encode_fix(Fix(TARGET, 40.0, -74.0, BASE + 700)), BASE + 700)  # after it
    # A producer whose clock is two hours ahead (stamped ten minutes from now): found all the same, and the
    # honest records written after it are read too (the read does not stop at the first late-stamped record).
    ahead = Fix(TARGET, 40.78, -73.96, BASE + 400.5)
    send(TARGET, encode_fix(ahead), BASE + 400.5 + 7200 + 600)
    expected.append([ahead.latitude, ahead.longitude, ahead.timestamp])
    late = Fix(TARGET, 40.76, -73.98, BASE + 5)  # taken at BASE+5, sent 40 s late: inside the margin
    send(TARGET, encode_fix(late), late.timestamp + 40)
    expected.append([late.latitude, late.longitude, late.timestamp])
    send(TARGET, b"{not json", BASE + 100)  # refused: not_json, skipped and counted
    send(TARGET, encode_fix(Fix(NEIGHBOUR, 40.7, -74.0, BASE + 101)), BASE + 101)  # key_mismatch
    hostile = Fix(HOSTILE, 40.74, -73.995, BASE + 200)
    send(HOSTILE, encode_fix(hostile), hostile.timestamp)
    send(HOSTILE, encode_fix(Fix(HOSTILE, 40.741, -73.994, BASE + 210)), BASE + 210)
    producer.flush()
    producer.close()
    return Sent(sorted(expected, key=lambda p: p[2]), partition)


@pytest.fixture(scope="module")
def topics(kafka_admin: KafkaAdminClient) -> Iterator[Topics]:
    topics = Topics.create(kafka_admin, "tracks")
    yield topics
    topics.delete(kafka_admin)


@pytest.fixture(scope="module")
def sent(kafka_bootstrap: str, topics: Topics) -> Sent:
    return produce(kafka_bootstrap, topics.drivers)


@pytest.fixture(scope="module")
def base(kafka_bootstrap: str, topics: Topics, sent: Sent) -> Iterator[str]:
    process, url = start_dashboard(kafka_bootstrap, topics, "tracks")
    yield url
    process.stop()
    assert "Traceback" not in process.log()


def track(base: str, driver_id: str, **query: str | float) -> requests.Response:
    path = "/api/drivers/" + urllib.parse.quote(driver_id, safe="") + "/track"
    return requests.get(base + path, params=query, timeout=30)


def test_a_track_holds_exactly_the_drivers_fixes_in_the_window_in_time_order(base, sent):
    response = track(base, TARGET, **{"from": BASE, "to": BASE + 600})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["driver_id"] == TARGET and (body["from"], body["to"]) == (BASE, BASE + 600)
    assert body["points"] == sent.expected, "the neighbour, the fixes outside and the wrong clock's are not there"
    assert body["read"]["partitions"] == [sent.partition], "only the driver's partition is read"
    assert key_partition(NEIGHBOUR.encode(), PARTITIONS) == sent.partition
    assert body["read"]["skipped"] == {"key_mismatch": 1, "not_json": 1}
    assert body["read"]["stopped"] is None and body["truncated"] is False
    assert len(body["speeds_kmh"]) == len(body["points"]) and body["speeds_kmh"][0] is None


def test_the_same_window_in_iso_8601_gives_the_same_track(base, sent):
    start = datetime.fromtimestamp(BASE, timezone.utc).isoformat().replace("+00:00", "Z")
    end = datetime.fromtimestamp(BASE + 600, timezone.utc).astimezone().isoformat()  # the machine's own zone
    body = track(base, TARGET, **{"from": start, "to": end}).json()
    assert body["points"] == sent.expected


def test_the_default_window_is_the_last_15_minutes(base):
    body = track(base, TARGET).json()
    assert body["points"] == [] and 899 < body["to"] - body["from"] <= 900.001


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        (BASE + 600, BASE, "before"),
        (BASE - 90_000, BASE, "at most 24 h"),
        ("last tuesday", BASE, "neither"),
        ("2026-12-01T10:00:00+24:00", BASE, "zone"),
        ("2026-12-01T10:00:00", BASE, "no zone"),
    ],
)
def test_a_bad_window_gets_400_with_a_sentence(base, start, end, says):
    response = track(base, TARGET, **{"from": start, "to": end})
    assert response.status_code == 400 and says in response.json()["error"]


@pytest.mark.parametrize(
    ("path_id", "statuses"),
    [
        ("%00", {400}),
        ("drv%0A1", {400, 404}),  # no route matches a newline: 404
        ("x" * 5000, {400}),
        ("a%2Fb", {200}),  # a valid id holding a slash: no fixes, an empty track
        ("%ED%A0%80", {200, 400}),  # a surrogate's UTF-8 bytes: werkzeug replaces them
        ("%E2%80%AE%D8%B3", {200}),
        ("..%2F..%2Fhealthz", {200}),
    ],
)
def test_a_hostile_id_in_the_path_gets_a_clean_json_answer(base, path_id, statuses):
    response = requests.get(f"{base}/api/drivers/{path_id}/track", timeout=30)
    assert response.status_code in statuses, response.text
    assert response.headers["Content-Type"] == "application/json" and response.content.isascii()
    body = response.json()
    assert ("error" in body) if response.status_code in (400, 404) else (body["points"] == [])


def test_the_exported_track_is_a_file_with_the_tracks_points(base, sent):
    query = {"driver": TARGET, "from": BASE, "to": BASE + 600, "inline": 1}
    response = requests.get(base + "/export/map.html", params=query, timeout=30)
    assert response.status_code == 200, response.text
    start, end = (datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%dT%H%M%SZ") for t in (BASE, BASE + 600))
    assert response.headers["Content-Disposition"] == f'attachment; filename="track-{TARGET}-{start}-{end}.html"'
    parser = HTMLParser()
    parser.feed(response.text)
    parser.close()
    for lat, lon, _ in sent.expected:
        assert f"{lat}, {lon}" in response.text


def test_a_hostile_id_shows_escaped_in_its_exported_track_and_in_the_file_name(base):
    query = {"driver": HOSTILE, "from": BASE, "to": BASE + 600}
    response = requests.get(base + "/export/map.html", params=query, timeout=30)
    assert response.status_code == 200, response.text
    assert "<script>alert" not in response.text and "&#60;script&#62;alert" in response.text
    assert re.fullmatch(
        r'attachment; filename="track-_script_alert__id____script_-\d{8}T\d{6}Z-\d{8}T\d{6}Z\.html"',
        response.headers["Content-Disposition"],
    )


def test_the_fleet_at_a_moment_is_each_drivers_last_fix_before_it(base):
    response = requests.get(base + "/export/map.html", params={"at": BASE + 205, "inline": 1}, timeout=30)
    assert response.status_code == 200, response.text
    at = datetime.fromtimestamp(BASE + 205, timezone.utc)
    assert response.headers["Content-Disposition"] == f'attachment; filename="fleet-{at:%Y%m%dT%H%M%SZ}.html"'
    assert f"{TARGET}: available, {datetime.fromtimestamp(BASE + 200, timezone.utc):%Y-%m-%d %H:%M:%S}" in response.text
    assert "40.74, -73.995" in response.text, "the hostile driver's fix at BASE+200, not its next one"
    assert "40.741, -73.994" not in response.text


def test_export_refuses_bad_arguments_with_400(base):
    for query in ({"inline": "yes"}, {"at": "soon"}, {"driver": "x\x00"}, {"driver": TARGET, "from": "x"}):
        response = requests.get(base + "/export/map.html", params=query, timeout=30)
        assert response.status_code == 400 and response.json()["error"], query


def test_the_inline_file_opens_offline_and_asks_no_server_for_anything(base, tmp_path: Path):
    query = {"driver": TARGET, "from": BASE, "to": BASE + 600, "inline": 1}
    file = tmp_path / "track.html"
    file.write_bytes(requests.get(base + "/export/map.html", params=query, timeout=30).content)
    asked: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.on("request", lambda r: asked.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(file.as_uri())
        page.wait_for_function("() => document.querySelector('.leaflet-container canvas') !== null")
        page.wait_for_timeout(300)
        assert page.text_content(".export-legend h1") == f"Track of {TARGET}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "export-track-inline.png")
        browser.close()
    assert [url for url in asked if not url.startswith(("file://", "data:"))] == []
    assert errors == []


def test_one_more_read_than_allowed_is_refused_while_the_others_run():
    reads = TrackReads("127.0.0.1:1", "t", limit=1, sleep=lambda _s: None)
    inner: list[BaseException] = []

    def scan(bootstrap: str, plan: ScanPlan, take, sleep) -> ScanResult:
        try:
            reads.track("drv-2", Window(0.0, 10.0))  # a second read while this one runs
        except Exception as e:  # noqa: BLE001 - the test looks at what it was
            inner.append(e)
        return ScanResult([0])

    reads.scan = scan
    reads.track("drv-1", Window(0.0, 10.0))
    assert [type(e).__name__ for e in inner] == ["ReadsBusy"] and "try again" in str(inner[0])
    assert reads.active == 0, "the slot is given back"


def test_a_read_is_bounded_by_its_end_offsets_even_on_a_topic_written_meanwhile(kafka_bootstrap, topics, sent):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    later = [Fix(TARGET, 40.75, -73.9, BASE + 5000 + i / 10) for i in range(20)]  # outside every window here
    seen: list[float] = []

    def take(record) -> bool:
        seen.append(record.offset)
        if len(seen) == 1:  # records arriving during the read are past its end offsets
            for fix in later:
                producer.send(
                    topics.drivers, key=TARGET.encode(), value=encode_fix(fix), timestamp_ms=int(time.time() * 1000)
                )
            producer.flush()
        return True

    plan = ScanPlan(topics.drivers, TARGET.encode(), 0, int((time.time() + 60) * 1000))
    result = scan_kafka(kafka_bootstrap, plan, take, time.sleep)
    producer.close()
    assert result.stopped is None and len(seen) == len(sent.expected) + 5, "its own records, not the later ones"
