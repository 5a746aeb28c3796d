"""History for the benchmarks that read the past (replay, tracks): hours of fixes produced in minutes.

:func:`produce_history` writes ``seconds`` rounds of ``drivers`` fixes, one per driver per second, ending at
``end_time``: driver *i*'s fix of round *r* is taken at ``end_time - seconds + r + i / drivers`` and carries that
time twice, as the fix's ``timestamp`` and as the Kafka record's timestamp (CreateTime), as the simulator's
fixes do when it sends them live. Keys are the driver ids (``drv-00001``...), so each driver's fixes stay on
one partition, in time order. Drivers circle slowly around points of a grid over Manhattan, so a replay has
something to glide.

Fast rather than paced: several producer processes, each owning whole partitions (the drivers Kafka's default
partitioner puts there), so that every partition is written round after round by one producer and its
timestamps rise as a live topic's do (drivers shared out otherwise would interleave one process's last hour
with another's first minute in the same partition); with large batches, ``acks=1`` and uncompressed JSON built
by hand (a one-hour 1,000-driver history is 3.6 M fixes). The topic must exist; a fresh one is the caller's.

    .venv/bin/python -m bench.history_data --topic bench-history --drivers 1000 --seconds 3600
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time

from kafka import KafkaProducer

from bus.partitioning import key_partition
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS, bootstrap_list

# Each process builds and sends its fixes in rounds; these knobs measured best on the 2-core machine.
# (kafka-python 3 has no buffer_memory: it refuses the key.)
PRODUCER_CONFIG = {"acks": 1, "linger_ms": 50, "batch_size": 512 * 1024}
LAT0, LON0 = 40.70, -74.02  # south-west corner of the drivers' grid
GRID_STEP = 0.004  # degrees between two drivers' centres
RADIUS = 0.0015  # degrees of each driver's circle
PERIOD_S = 600.0  # one lap


def driver_id(i: int) -> str:
    return f"drv-{i + 1:05d}"


def fix_value(i: int, ts: float) -> bytes:
    """Driver ``i``'s fix at epoch ``ts``: a valid ``driver-location`` message (docs/api.md)."""
    angle = 2 * math.pi * ((ts / PERIOD_S) + i / 7.0)
    lat = LAT0 + (i % 40) * GRID_STEP + RADIUS * math.sin(angle)
    lon = LON0 + (i // 40 % 40) * GRID_STEP + RADIUS * math.cos(angle)
    heading = (360.0 - math.degrees(angle)) % 360.0  # counter-clockwise lap: tangent direction
    status = ("available", "on_trip", "available", "offline")[(i + int(ts // 300)) % 4]
    return (
        f'{{"driver_id":"{driver_id(i)}","latitude":{lat:.6f},"longitude":{lon:.6f},"timestamp":{ts:.3f},'
        f'"heading":{heading:.1f},"speed_kmh":30.0,"status":"{status}"}}'
    ).encode()


def _produce_share(bootstrap: str, topic: str, drivers: int, seconds: int, start: float, share: list[int]) -> int:
    """One process's drivers, round after round; returns how many fixes Kafka acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_list(bootstrap), **PRODUCER_CONFIG)
    keys = {i: driver_id(i).encode() for i in share}
    sent = 0
    for r in range(seconds):
        for i in share:
            ts = start + r + i / drivers
            producer.send(topic, key=keys[i], value=fix_value(i, ts), timestamp_ms=int(ts * 1000))
            sent += 1
    producer.flush()
    producer.close()
    return sent


def _produce_share_args(args: tuple[str, str, int, int, float, list[int]]) -> int:
    return _produce_share(*args)


def produce_history(bootstrap: str, topic: str, drivers: int, seconds: int, end_time: float, processes: int = 4) -> int:
    """Write ``seconds`` seconds of ``drivers`` drivers at 1 Hz ending at epoch ``end_time`` into ``topic``;
    return the number of fixes written (``drivers * seconds``)."""
    start = end_time - seconds
    partitions = _partition_count(bootstrap, topic)
    processes = max(1, min(processes, partitions, drivers))
    owner = [key_partition(driver_id(i).encode(), partitions) % processes for i in range(drivers)]
    shares = [[i for i in range(drivers) if owner[i] == p] for p in range(processes)]
    jobs = [(bootstrap, topic, drivers, seconds, start, share) for share in shares]
    if processes == 1:
        return _produce_share_args(jobs[0])
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return sum(pool.map(_produce_share_args, jobs))


def _partition_count(bootstrap: str, topic: str) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap_list(bootstrap))
    try:
        return len(producer.partitions_for(topic))
    finally:
        producer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default=KAFKA_BOOTSTRAP_SERVERS.read())
    parser.add_argument("--topic", required=True, help="an existing topic (a fresh one)")
    parser.add_argument("--drivers", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--end-time", type=float, default=None, help="epoch seconds of the last round (default: now)")
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args(argv)
    started = time.monotonic()
    end = args.end_time if args.end_time is not None else time.time()
    count = produce_history(args.bootstrap_servers, args.topic, args.drivers, args.seconds, end, args.processes)
    elapsed = time.monotonic() - started
    print(f"{count:,} fixes in {elapsed:.1f} s ({count / elapsed:,.0f} fixes/s) into {args.topic}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
