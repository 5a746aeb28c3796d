"""One Socket.IO viewer of the benchmarks, in a process of its own: what a map would receive.

Speaks both dashboards that ``bench/pipeline.py`` compares:

- ``frames``: ``python -m dashboard`` (protocol v1 of docs/api.md): ``snapshot`` and ``positions``
  events whose ``data`` holds 24-byte binary records, decoded here with numpy in one call per frame;
- ``tutorial``: ``bench/tutorial_dashboard.py``, one JSON ``location_update`` event per Kafka message.

Per driver it keeps the newest fix timestamp received. A record that advances it is a *delivered
fix*; its latency is the receive time minus the fix timestamp (same machine, same clock). Once a
second (on whole epoch seconds) it appends one JSON line to ``--out``: events, records and fixes
received in that second, the latency histogram in whole milliseconds, bytes read from its socket
(``rchar`` of /proc/self/io: the process does no other I/O), its own CPU, and how many of the fleet's
``--drivers`` it holds a fix of no older than ``--fresh-within`` seconds at that instant.

    .venv/bin/python -m bench.client --url http://127.0.0.1:5000 --drivers 10000 --out /tmp/c0.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import engineio
import numpy as np
import socketio
import websocket._core

from fleet import frames

TUTORIAL_EVENT = "location_update"


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="the dashboard's base URL")
    parser.add_argument("--protocol", choices=("frames", "tutorial"), default="frames")
    parser.add_argument("--drivers", type=int, required=True, help="drivers in the simulated fleet")
    parser.add_argument("--fresh-within", type=float, default=1.5, help="seconds: a held fix this recent is fresh")
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds before it disconnects by itself")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per second")
    return parser


class InOrderEngineIO(engineio.Client):
    """Engine.IO messages handled one after the other on the reader thread, as a browser does.

    python-engineio's client starts a new thread for every message it receives (python-engineio
    4.15.1). Under load those threads run out of order: a binary attachment then reaches python-socketio
    before its event, which drops it with "Unexpected binary attachment" (python-socketio issue #436),
    and a thread per message would also dominate the cost of a client receiving thousands of events a second.
    """

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    def _engineio_client_class(self) -> type[engineio.Client]:
        return InOrderEngineIO


class Receiver:
    """Counters of one second, shared by the Socket.IO reader thread and the once-a-second sampler."""

    def __init__(self, drivers: int, fresh_within_s: float) -> None:
        self.drivers = drivers
        self.fresh_within_s = fresh_within_s
        self.lock = threading.Lock()
        self.events = 0
        self.records = 0
        self.fixes = 0
        self.snapshots = 0
        self.resyncs = 0

    def take_counts(self) -> dict[str, Any]:
        """This second's counters (reset), under the lock."""
        counts = {
            "events": self.events,
            "records": self.records,
            "fixes": self.fixes,
            "snapshots": self.snapshots,
            "resyncs": self.resyncs,
        }
        self.events = self.records = self.fixes = self.snapshots = self.resyncs = 0
        counts["latency_ms"], counts["latency_max_ms"] = self.take_latencies()
        return counts

    def take_latencies(self) -> tuple[dict[int, int], int | None]:
        raise NotImplementedError

    def freshness(self, now: float) -> dict[str, Any]:
        raise NotImplementedError


class FramesReceiver(Receiver):
    """The dashboard's binary frames: newest fix per driver index in a numpy array."""

    def __init__(self, drivers: int, fresh_within_s: float, client: InOrderClient) -> None:
        super().__init__(drivers, fresh_within_s)
        self.client = client
        self.newest = np.full(max(drivers, 1), -np.inf)
        self.latencies: list[np.ndarray] = []
        self.seq: int | None = None
        self.waiting_for_snapshot = False

    def on_snapshot(self, payload: dict[str, Any]) -> None:
        received = time.time()
        with self.lock:
            self.events += 1
            self.snapshots += 1
            self.seq = payload["seq"]
            self.waiting_for_snapshot = False
            self._apply(payload["data"], payload["t0"], received)

    def on_positions(self, payload: dict[str, Any]) -> None:
        received = time.time()
        with self.lock:
            self.events += 1
            seq = payload["seq"]
            if self.seq is not None and seq <= self.seq:
                return  # already in the snapshot
            if self.seq is not None and seq != self.seq + 1 and not self.waiting_for_snapshot:
                self.resyncs += 1
                self.waiting_for_snapshot = True
                self.client.emit("resync")  # what the page does: it missed frames
            self.seq = seq
            for idx in payload["gone"]:
                if idx < len(self.newest):
                    self.newest[idx] = -np.inf
            self._apply(payload["data"], payload["t0"], received)

    def _apply(self, data: bytes, t0: float, received: float) -> None:
        records = np.frombuffer(data, dtype=frames.RECORD_DTYPE)
        if not len(records):
            return
        idx = records["idx"].astype(np.int64)
        stamps = t0 + records["ms"] / 1000.0
        top = int(idx.max())
        if top >= len(self.newest):
            grown = np.full(max(top + 1, 2 * len(self.newest)), -np.inf)
            grown[: len(self.newest)] = self.newest
            self.newest = grown
        newer = stamps > self.newest[idx]
        self.newest[idx[newer]] = stamps[newer]
        self.records += len(records)
        self.fixes += int(newer.sum())
        self.latencies.append(np.rint((received - stamps[newer]) * 1000.0).astype(np.int64))

    def take_latencies(self) -> tuple[dict[int, int], int | None]:
        if not self.latencies:
            return {}, None
        values = np.concatenate(self.latencies)
        self.latencies = []
        if not len(values):
            return {}, None
        keys, counts = np.unique(values, return_counts=True)
        return dict(zip(keys.tolist(), counts.tolist(), strict=True)), int(values.max())

    def freshness(self, now: float) -> dict[str, Any]:
        held = self.newest[np.isfinite(self.newest)]
        ages = now - held
        return {
            "drivers": int(len(held)),
            "fresh": int((ages <= self.fresh_within_s).sum()),
            "max_age_ms": round(float(ages.max()) * 1000) if len(held) else None,
        }


class TutorialReceiver(Receiver):
    """The tutorial's JSON events: newest fix per driver id in a dict."""

    def __init__(self, drivers: int, fresh_within_s: float) -> None:
        super().__init__(drivers, fresh_within_s)
        self.newest: dict[str, float] = {}
        self.latencies: Counter[int] = Counter()
        self.latency_max: int | None = None

    def on_location(self, location: dict[str, Any]) -> None:
        received = time.time()
        with self.lock:
            self.events += 1
            self.records += 1
            driver_id, stamp = location["driver_id"], location["timestamp"]
            if stamp > self.newest.get(driver_id, -math.inf):
                self.newest[driver_id] = stamp
                self.fixes += 1
                ms = round((received - stamp) * 1000.0)
                self.latencies[ms] += 1
                if self.latency_max is None or ms > self.latency_max:
                    self.latency_max = ms

    def take_latencies(self) -> tuple[dict[int, int], int | None]:
        taken, top = dict(self.latencies), self.latency_max
        self.latencies = Counter()
        self.latency_max = None
        return taken, top

    def freshness(self, now: float) -> dict[str, Any]:
        ages = [now - stamp for stamp in self.newest.values()]
        return {
            "drivers": len(ages),
            "fresh": sum(1 for age in ages if age <= self.fresh_within_s),
            "max_age_ms": round(max(ages) * 1000) if ages else None,
        }


class SocketBytes:
    """Counts what websocket-client reads from its socket: it reads through ``websocket._core.recv`` only."""

    def __init__(self) -> None:
        self.total = 0
        self._recv = websocket._core.recv
        websocket._core.recv = self._counting_recv

    def _counting_recv(self, sock: Any, bufsize: int) -> bytes:
        data = self._recv(sock, bufsize)
        self.total += len(data)
        return data


def sample_every_second(receiver: Receiver, wire: SocketBytes, out, stop: threading.Event) -> None:
    """One line per whole epoch second until ``stop``; the line of second T covers (T-1, T]."""
    last_bytes, last_cpu = wire.total, time.process_time()
    while not stop.is_set():
        second = math.floor(time.time()) + 1
        if stop.wait(max(0.0, second - time.time())):
            break
        with receiver.lock:
            line = {"t": second, **receiver.take_counts(), **receiver.freshness(second)}
        now_bytes, now_cpu = wire.total, time.process_time()
        line["bytes"], line["cpu_s"] = now_bytes - last_bytes, round(now_cpu - last_cpu, 4)
        last_bytes, last_cpu = now_bytes, now_cpu
        out.write(json.dumps(line) + "\n")
        out.flush()


def main(argv: list[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    wire = SocketBytes()
    # websocket-client checks the UTF-8 of every text frame byte by byte in pure Python unless told not
    # to (or wsaccel is installed); the frame is decoded as UTF-8 right after anyway, in C. A browser
    # does this natively, so the clients skip the Python check, which would dominate a JSON event.
    client = InOrderClient(reconnection=False, websocket_extra_options={"skip_utf8_validation": True})
    receiver: Receiver
    if args.protocol == "frames":
        receiver = FramesReceiver(args.drivers, args.fresh_within, client)
        client.on("snapshot", receiver.on_snapshot)
        client.on("positions", receiver.on_positions)
    else:
        receiver = TutorialReceiver(args.drivers, args.fresh_within)
        client.on(TUTORIAL_EVENT, receiver.on_location)
    client.on("disconnect", lambda *_: stop.set())
    with args.out.open("w") as out:
        client.connect(args.url, transports=["websocket"], wait_timeout=30)
        out.write(json.dumps({"connected": time.time(), "protocol": args.protocol}) + "\n")
        out.flush()
        sampler = threading.Thread(target=sample_every_second, args=(receiver, wire, out, stop), daemon=True)
        sampler.start()
        stop.wait(args.duration)
        stop.set()
        sampler.join(5)
        client.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
