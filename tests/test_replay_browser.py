"""Replay in Debian's chromium: one page replays and scrubs while another stays live, then goes live again.

The module's simulator and dashboard are tests/test_page_browser.py's (imported fixtures, instances of this
module's own); the replay seeks into the seconds the simulator has already sent.
"""

from __future__ import annotations

import time

import pytest

from tests.test_page_browser import (  # noqa: F401 - fixtures
    DRIVERS,
    browser,
    dashboard,
    held_by,
    live_dashboard,
    log_dir,
    open_page,
    simulator,
    topic,
)

pytestmark = pytest.mark.browser

REPLAY = "() => fleetDebug.replay()"


def replay_state(page) -> dict:
    return page.page.evaluate(REPLAY)


def drawn_positions(page) -> dict:
    return dict(page.debug("ids().map(id => [id, fleetDebug.drawnAt(id)])"))


def test_one_page_replays_and_scrubs_while_another_stays_live_then_goes_live_again(
    dashboard,  # noqa: F811
    open_page,  # noqa: F811
    simulator,  # noqa: F811
):
    live = open_page(dashboard + "/")
    replayer = open_page(dashboard + "/")
    for page in (live, replayer):
        page.wait_drawn(held_by(dashboard))
    simulator.ran_for(10)  # seconds of history to replay
    page = replayer.page
    target = time.time() - 5
    scrub = """t => { const range = document.getElementById('timebar-range');
      range.value = String(Math.round(t)); range.dispatchEvent(new Event('change')); }"""
    page.evaluate(scrub, target)  # in one go: the time bar puts the thumb back at its place every second
    page.wait_for_function("() => fleetDebug.replay().mode === 'replay'", timeout=10000)
    state = replay_state(replayer)
    assert abs(state["t"] - round(target)) < 3 and state["speed"] == 1
    replayer.wait_drawn(DRIVERS)
    page.wait_for_function("() => document.body.dataset.connection === 'replay'")
    assert page.text_content("#badge") == "replay"
    assert page.text_content("#timebar-status").startswith("Replaying ")
    assert page.text_content("#subtitle-mode") == "replaying"
    replayer.screenshot("replay-1280x800")

    # Search and follow work on the replayed fleet; the details say what they show.
    driver = replayer.debug("ids()")[0]
    page.keyboard.press("/")
    page.keyboard.type(driver)
    page.keyboard.press("Enter")
    assert replayer.debug("following()") == driver
    page.wait_for_function("() => document.getElementById('card-note').textContent.startsWith('Replayed')")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")

    # The other page stays live: its fleet keeps moving with fixes of now.
    live.page.wait_for_timeout(1500)
    assert replay_state(live)["mode"] == "live" and live.debug("connection()") == "live"
    newest = live.page.evaluate("() => fleetDebug.replay().t")
    assert newest is None

    # Space pauses; the replayed time then holds still; arrows step back 10 s.
    page.locator("body").focus()
    page.keyboard.press("Space")
    page.wait_for_function("() => fleetDebug.replay().mode === 'replay' && !fleetDebug.replay().playing")
    page.wait_for_timeout(300)  # the server's paused snapshot: its clock stopped a few ms from ours
    paused = replay_state(replayer)["t"]
    page.wait_for_timeout(1000)
    assert replay_state(replayer)["t"] == pytest.approx(paused, abs=0.01)
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"() => fleetDebug.replay().mode === 'replay' && fleetDebug.replay().t < {paused - 8}")

    # Speed 4x, playing: the replayed time runs about four times as fast as the clock.
    page.select_option("#replay-speed", "4")
    page.click("#replay-play")
    page.wait_for_function("() => fleetDebug.replay().playing && fleetDebug.replay().speed === 4")
    before, started = replay_state(replayer)["t"], time.monotonic()
    page.wait_for_timeout(2000)
    rate = (replay_state(replayer)["t"] - before) / (time.monotonic() - started)
    assert 3.0 <= rate <= 5.0, f"{rate:.2f} replayed seconds a second at 4x"

    # Live again: live frames, the live badge and title.
    page.click("#replay-live")
    page.wait_for_function("() => fleetDebug.replay().mode === 'live'")
    page.wait_for_function("() => document.body.dataset.connection === 'live'", timeout=5000)
    assert page.text_content("#subtitle-mode") == "live"
    held = held_by(dashboard)  # held, not drawn: following zoomed the map in on one driver
    page.wait_for_function("n => fleetDebug.drivers() === n", arg=held, timeout=10000)
    assert replayer.errors == [] and live.errors == []
    assert replayer.policy_violations() == []


def test_ten_seconds_back_replays_the_whole_fleet_and_says_so(dashboard, open_page, simulator):  # noqa: F811
    """Also the screenshot docs/screenshot-replay.png is copied from (test-artifacts/page/screenshot-replay.png)."""
    page = open_page(dashboard + "/")
    page.wait_drawn(held_by(dashboard))
    simulator.ran_for(14)  # more than the ten seconds it steps back
    page.page.click("#replay-back-10")
    page.page.wait_for_function("() => fleetDebug.replay().mode === 'replay'", timeout=10000)
    page.wait_drawn(DRIVERS)
    page.page.wait_for_timeout(1500)
    assert page.page.text_content("#badge") == "replay"
    assert page.page.get_attribute("#timebar-range", "aria-valuetext") != "live"
    page.screenshot("screenshot-replay")
