"""Replay: how fast a seek shows the past, and whether 60x playback keeps up, with and without a live fleet.

An hour of --drivers drivers at 1 Hz (bench/history_data.py: CreateTime and ``timestamp`` in the past) goes
into a fresh topic of 6 partitions; one ``python -m dashboard`` serves it. Then, with python-socketio
clients standing in for browsers (they decode the frames as the page does, fleet/frames.FleetView):

- seek: --reps seeks to the middle of the hour (each to another second), paused; the time from sending
  ``replay`` to the first replayed frame (the lookback snapshot), and how many drivers it holds;
- 60x: one replay from a quarter in, at 60x, for --duration seconds: replayed seconds per real second (the
  frames' ``t``), fixes replayed per second (that rate times the drivers, one fix each a second), and how far
  the newest fix in each frame trails the frame's replayed time (p50, p99: the replay keeping up means
  about one replayed second);
- with --live-drivers N > 0: four replays at 60x at once while N simulated drivers stream live to one live
  client: its fix-to-client latency (p50, p99) and the replays' rates.

    .venv/bin/python -m bench replay
    .venv/bin/python -m bench.replay --drivers 1000 --seconds 3600 --live-drivers 10000

Prints a table and writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime, timezone
from typing import Any

import socketio

from bench.common import (
    DASHBOARD_ENV,
    Child,
    Topic,
    bench_parser,
    command_line,
    dashboard_command,
    free_port,
    http_ok,
    parse_and_describe,
    percentile,
    print_table,
    result_path,
    simulator_commands,
    stop_all,
    wait_until,
    write_result,
)
from bench.history_data import produce_history
from fleet.frames import decode_records

QUICK = {"drivers": 200, "seconds": 300, "reps": 3, "duration": 5.0, "live_drivers": 0}
# The history ends this long before the run starts, so the whole hour is in the past.
END_BEFORE_S = 5.0


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.replay", __doc__, QUICK, "replay")
    parser.add_argument("--drivers", type=int, default=1000, help="drivers in the history, one fix a second each")
    parser.add_argument("--seconds", type=int, default=3600, help="seconds of history")
    parser.add_argument("--reps", type=int, default=5, help="seeks measured")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of each 60x playback")
    parser.add_argument("--live-drivers", type=int, default=10_000, help="live drivers during four replays (0: skip)")
    parser.add_argument("--producers", type=int, default=4, help="processes writing the history")
    return parser


class Viewer:
    """A python-socketio client that replays (or stays live) and notes each frame's arrival, as a browser would."""

    def __init__(self, base: str) -> None:
        self.lock = threading.Lock()
        self.replay_id = 0
        self.first_at: float | None = None
        self.first_drivers = 0
        self.frames: list[tuple[float, float, float]] = []  # (arrival, replayed t, newest fix timestamp)
        self.live_latency: list[float] = []
        self.refused: list[dict[str, Any]] = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("snapshot", self._event)
        self.sio.on("positions", self._event)
        self.sio.on("replay_refused", self.refused.append)
        self.sio.connect(base, wait_timeout=10)

    def seek(self, t: float, speed: int, playing: bool) -> float:
        with self.lock:
            self.replay_id += 1
            self.first_at = None
            self.frames = []
        sent = time.monotonic()
        self.sio.emit("replay", {"id": self.replay_id, "t": t, "speed": speed, "playing": playing})
        return sent

    def _event(self, payload: dict[str, Any]) -> None:
        arrival = time.monotonic()
        replay = payload.get("replay")
        if replay is None:  # a live frame: fix-to-client latency
            received = time.time()
            if "gone" in payload:  # positions, not the snapshot (which holds the state at connect time)
                stamps = [r.timestamp for r in decode_records(payload["data"], payload["t0"])]
                with self.lock:
                    self.live_latency += [received - ts for ts in stamps]
            return
        with self.lock:
            if replay["id"] != self.replay_id:
                return
            records = decode_records(payload["data"], payload["t0"])
            newest = max((r.timestamp for r in records), default=replay["t"])
            if self.first_at is None:
                self.first_at = arrival
                self.first_drivers = len(records)
            self.frames.append((arrival, replay["t"], newest))

    def close(self) -> None:
        self.sio.disconnect()


def start_dashboard(bootstrap: str, topic: str, name: str) -> tuple[Child, str]:
    port = free_port()
    env = {**DASHBOARD_ENV, "DASHBOARD_MAX_REPLAYS": "4"}
    child = Child(name, dashboard_command(port, topic, bootstrap), env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(base + "/healthz"), 60, "the dashboard is healthy", [child])
    return child, base


def seek_part(base: str, args: argparse.Namespace, start: float) -> dict[str, Any]:
    viewer = Viewer(base)
    waits, held = [], []
    try:
        for rep in range(args.reps):
            t = start + args.seconds / 2 + rep * 7.3
            sent = viewer.seek(t, 1, False)
            wait_until(lambda: viewer.first_at is not None, 30, "the first replayed frame")
            assert viewer.first_at is not None
            waits.append(viewer.first_at - sent)
            held.append(viewer.first_drivers)
    finally:
        viewer.close()
    return {
        "name": f"seek to the middle ({args.drivers:,} drivers, {args.seconds} s of history)",
        "first_frame_s_median": statistics.median(waits),
        "first_frame_s_max": max(waits),
        "drivers_in_first_frame": min(held),
    }


def playback(viewers: list[Viewer], drivers: int, duration: float, name: str) -> list[dict[str, Any]]:
    time.sleep(duration)
    rows = []
    for n, viewer in enumerate(viewers):
        with viewer.lock:
            frames = list(viewer.frames)
        (first_at, first_t, _), (last_at, last_t, _) = frames[1], frames[-1]  # after the lookback snapshot
        rate = (last_t - first_t) / (last_at - first_at)
        trailing = sorted(t - newest for _, t, newest in frames[1:])
        rows.append(
            {
                "name": f"{name}, replay {n + 1}" if len(viewers) > 1 else name,
                "replayed_s_per_s": rate,
                "fixes_per_s": rate * drivers,
                "trailing_s_p50": percentile(trailing, 0.5),
                "trailing_s_p99": percentile(trailing, 0.99),
                "frames": len(frames),
            }
        )
    return rows


def sixty_x_part(base: str, args: argparse.Namespace, start: float, viewers_count: int = 1) -> list[dict[str, Any]]:
    viewers = [Viewer(base) for _ in range(viewers_count)]
    try:
        for n, viewer in enumerate(viewers):
            viewer.seek(start + args.seconds / 4 + n * 60, 60, True)
        for viewer in viewers:
            wait_until(lambda viewer=viewer: viewer.first_at is not None, 30, "the 60x replay started")
        name = "60x playback" if viewers_count == 1 else f"60x, {viewers_count} at once, live fleet streaming"
        return playback(viewers, args.drivers, args.duration, name)
    finally:
        for viewer in viewers:
            viewer.close()


def live_part(base: str, bootstrap: str, topic: str, args: argparse.Namespace, start: float) -> list[dict[str, Any]]:
    """Four 60x replays while ``--live-drivers`` stream live to one live viewer."""
    commands = simulator_commands(args.live_drivers, topic, bootstrap, args.duration + 60)
    simulators = [Child(f"replay-simulator-{i}", command) for i, command in enumerate(commands)]
    live = Viewer(base)
    try:
        time.sleep(10)  # the simulators reach their pace
        with live.lock:
            live.live_latency = []
        rows = sixty_x_part(base, args, start, viewers_count=4)
        with live.lock:
            latency = sorted(live.live_latency)
        rows.append(
            {
                "name": f"live viewer, {args.live_drivers:,} drivers at 1 Hz, during the four replays",
                "live_latency_ms_p50": 1000 * (percentile(latency, 0.5) or 0),
                "live_latency_ms_p99": 1000 * (percentile(latency, 0.99) or 0),
                "frames": len(latency),
            }
        )
        return rows
    finally:
        live.close()
        stop_all(simulators)


COLUMNS = [
    ("name", "run", ""),
    ("first_frame_s_median", "first frame s (median)", ".2f"),
    ("first_frame_s_max", "max", ".2f"),
    ("drivers_in_first_frame", "drivers", ",d"),
    ("replayed_s_per_s", "replayed s/s", ".1f"),
    ("fixes_per_s", "fixes/s", ",.0f"),
    ("trailing_s_p50", "trail p50 s", ".2f"),
    ("trailing_s_p99", "trail p99 s", ".2f"),
    ("live_latency_ms_p50", "live p50 ms", ".0f"),
    ("live_latency_ms_p99", "live p99 ms", ".0f"),
]


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "replay")
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "command": command_line("bench.replay", argv),
    }
    with Topic(args.bootstrap_servers, "replay") as topic:
        end = time.time() - END_BEFORE_S
        started = time.monotonic()
        count = produce_history(args.bootstrap_servers, topic.name, args.drivers, args.seconds, end, args.producers)
        produced_s = time.monotonic() - started
        print(f"history: {count:,} fixes in {produced_s:.1f} s ({count / produced_s:,.0f} fixes/s)", flush=True)
        results["history"] = {"fixes": count, "seconds": produced_s, "rate": count / produced_s}
        start = end - args.seconds
        dashboard, base = start_dashboard(args.bootstrap_servers, topic.name, "replay-dashboard")
        try:
            rows = [seek_part(base, args, start), *sixty_x_part(base, args, start)]
            if args.live_drivers > 0:
                rows += live_part(base, args.bootstrap_servers, topic.name, args, start)
            results["rows"] = rows
            results["dashboard_peak_rss_mib"] = dashboard.peak_rss_mib()
        finally:
            stop_all([dashboard])
    print_table("replay", rows, COLUMNS)
    write_result(args.json or result_path("replay", args.quick), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
