"""Many Socket.IO viewers in one process, each from a loopback address of its own, for ``bench/viewers.py``.

nginx in front of ``python -m dashboard.replicas`` is sticky by client address (``ip_hash``, which keys on
the first three octets of an IPv4 address), so viewers that all came from 127.0.0.1 would all land on one
dashboard. Linux answers every address of 127.0.0.0/8 on the loopback interface, so viewer *i* binds
127.<1 + i // 256>.<i % 256>.1: a /24 of its own, like users on different networks. Before connecting,
each viewer asks nginx for ``/healthz`` from its address and keeps the ``X-Upstream`` header: the
dashboard that its session lands on too.

Each viewer keeps the fleet as ``bench/client.py``'s frames receiver does. Once a second (on whole epoch
seconds) the process appends one JSON line to ``--out`` with, per dashboard: its viewers, how many of
them held every driver of the fleet with a fix at most ``--fresh-within`` seconds old at that instant
(``complete``), the indices of those that did not, the fixes they received and the fix-to-viewer
latency histogram in whole milliseconds; and the process's own CPU.

    .venv/bin/python -m bench.crowd --url http://127.0.0.1:8080 --drivers 10000 --clients 100 --out /tmp/c.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from bench.client import FramesReceiver, InOrderClient

TRANSPORTS = ("websocket", "polling")
UPSTREAM_HEADER = "X-Upstream"


def source_address(index: int) -> str:
    """Viewer ``index``'s loopback address, in a /24 of its own (up to 65,279 viewers)."""
    if not 0 <= index < 255 * 256:
        raise ValueError(f"viewer {index} has no loopback /24 of its own")
    return f"127.{1 + index // 256}.{index % 256}.1"


class SourceAddressAdapter(HTTPAdapter):
    """requests' HTTP connections opened from one local address (urllib3's ``source_address``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def bound_session(source: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", SourceAddressAdapter(source))
    return session


def upstream_of(url: str, source: str) -> str:
    """The dashboard nginx sends ``source``'s requests to, from the header nginx adds (docs/deployment.md)."""
    with bound_session(source) as session:
        return session.get(url + "/healthz", timeout=10).headers.get(UPSTREAM_HEADER, "?")


def bound_client(url: str, source: str, transport: str) -> InOrderClient:
    """A Socket.IO client (not yet connected) whose every connection leaves from ``source``.

    Long polling goes through a requests session bound to the address; a WebSocket gets a socket
    already connected from it, which websocket-client accepts as its ``socket`` option.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport {transport!r} is not one of {TRANSPORTS}")
    # The UTF-8 check of websocket-client is pure Python per byte; the frames are binary anyway (bench/client.py).
    options: dict[str, Any] = {"skip_utf8_validation": True}
    if transport == "websocket":
        parts = urlsplit(url)
        sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=30, source_address=(source, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        options["socket"] = sock
    return InOrderClient(reconnection=False, http_session=bound_session(source), websocket_extra_options=options)


class Viewer:
    """One connected client and what it received."""

    def __init__(self, index: int, url: str, drivers: int, fresh_within_s: float, transport: str) -> None:
        self.index = index
        self.source = source_address(index)
        self.upstream = upstream_of(url, self.source)
        self.client = bound_client(url, self.source, transport)
        self.receiver = FramesReceiver(drivers, fresh_within_s, self.client)
        self.connected = True
        self.client.on("snapshot", self.receiver.on_snapshot)
        self.client.on("positions", self.receiver.on_positions)
        self.client.on("disconnect", self._gone)
        self.client.connect(url, transports=[transport], wait_timeout=30)

    def _gone(self, *_args: Any) -> None:
        self.connected = False

    def sample(self, second: float) -> dict[str, Any]:
        with self.receiver.lock:
            return {**self.receiver.take_counts(), **self.receiver.freshness(second)}


def second_line(second: int, viewers: list[Viewer], drivers: int) -> dict[str, Any]:
    """What the viewers received in the second ending at ``second``, per dashboard."""
    per: dict[str, dict[str, Any]] = {}
    for viewer in viewers:
        taken = viewer.sample(second)
        empty = {"clients": 0, "complete": 0, "incomplete": [], "fixes": 0, "resyncs": 0, "gone": 0}
        row = per.setdefault(viewer.upstream, {**empty, "latency_ms": Counter()})
        row["clients"] += 1
        if taken["fresh"] >= drivers and viewer.connected:
            row["complete"] += 1
        else:
            row["incomplete"].append(viewer.index)
        row["fixes"] += taken["fixes"]
        row["resyncs"] += taken["resyncs"]
        row["gone"] += 0 if viewer.connected else 1
        row["latency_ms"].update(taken["latency_ms"])
    for row in per.values():
        row["latency_ms"] = dict(row["latency_ms"])
    return {"t": second, "by_upstream": per}


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crowd",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="nginx's base URL")
    parser.add_argument("--drivers", type=int, required=True, help="drivers in the simulated fleet")
    parser.add_argument("--clients", type=int, required=True, help="viewers in this process")
    parser.add_argument("--first-index", type=int, default=0, help="index of the first viewer (its address)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="websocket")
    parser.add_argument("--fresh-within", type=float, default=1.5, help="seconds: a held fix this recent is fresh")
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds before it disconnects by itself")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per second")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    viewers: list[Viewer] = []
    with args.out.open("w") as out:
        try:
            for index in range(args.first_index, args.first_index + args.clients):
                if stop.is_set():
                    return 1
                viewers.append(Viewer(index, args.url, args.drivers, args.fresh_within, args.transport))
            clients = [{"index": v.index, "source": v.source, "upstream": v.upstream} for v in viewers]
            out.write(json.dumps({"connected": time.time(), "clients": clients}) + "\n")
            out.flush()
            deadline = time.monotonic() + args.duration
            last_cpu = time.process_time()
            while not stop.is_set() and time.monotonic() < deadline:
                second = math.floor(time.time()) + 1
                if stop.wait(max(0.0, second - time.time())):
                    break
                line = second_line(second, viewers, args.drivers)
                now_cpu = time.process_time()
                line["cpu_s"], last_cpu = round(now_cpu - last_cpu, 4), now_cpu
                out.write(json.dumps(line) + "\n")
                out.flush()
        finally:
            for viewer in viewers:
                viewer.client.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
