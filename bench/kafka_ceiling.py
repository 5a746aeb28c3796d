"""Kafka itself on this machine, as the ceiling: kafka-python's producer and consumer alone, our fixes.

What the client library reaches with nothing else in the process, so the pipeline's figures can be
read against it (bench/pipeline.py consumes through the same library, inside the dashboard).

1. producer: real fixes (the simulator's JSON, about 160 bytes, 10,000 keys) sent as fast as
   possible into a topic of 6 partitions, acks=all and idempotence on, then flushed; kafka-python's
   default batching and the simulator's. Plus kafka-python's own script
   (``kafka.benchmarks.producer_performance``, same record size) for reference.
2. consumer: --messages fixes read back from the start of that topic by a fresh process, with
   kafka-python's defaults, with the dashboard's settings (``dashboard/feed.py``), and with what the
   dashboard does per record (``fleet.schema.parse_fix``); then the knobs that could lift a
   consumer-bound pipeline: bigger polls and fetches, ``fetch_min_bytes``, orjson instead of json,
   and a second consumer process with half the partitions each. Plus kafka-python's own
   ``kafka.benchmarks.consumer_performance``.

Each row is the median of --reps runs; CPU is the consuming (or producing) process's, all threads.

    .venv/bin/python -m bench kafka
    .venv/bin/python -m bench.kafka_ceiling --messages 500000 --reps 5

Prints a table per part and writes bench/results/kafka_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import statistics
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from bench.common import (
    PARTITIONS,
    PYTHON,
    Topic,
    bench_parser,
    command_line,
    parse_and_describe,
    print_table,
    result_path,
    write_result,
)
from bench.simulator_rate import producer_ceiling, sample_fixes
from bus.lean_fetch import lean_consumer
from dashboard.feed import FeedSpec
from dashboard.service import DRIVER_FETCH_MAX_WAIT_MS, DRIVER_POLL_RECORDS
from fleet.schema import InvalidMessage, parse_fix
from simulator.producer import ProducerOptions

QUICK = {"messages": 30_000, "reps": 1}
PRODUCER_SETTINGS = {
    "kafka-python defaults (linger 0 ms, batch 16 KiB)": (0, 16384, None),
    "the simulator's (linger 20 ms, batch 128 KiB)": (
        ProducerOptions.linger_ms,
        ProducerOptions.batch_size,
        ProducerOptions.compression,
    ),
}
# The driver feed's (dashboard/service.py, dashboard/feed.py), fetch_min_bytes aside: a variant of its own below.
DASHBOARD_CONSUMER = {
    "fetch_max_wait_ms": DRIVER_FETCH_MAX_WAIT_MS,
    "max_poll_records": DRIVER_POLL_RECORDS,
    "fetch_max_bytes": FeedSpec.fetch_max_bytes,
    "max_partition_fetch_bytes": FeedSpec.max_partition_fetch_bytes,
}
BIG_POLLS = {
    **DASHBOARD_CONSUMER,
    "max_poll_records": 5000,
    "fetch_max_bytes": 8 * 2**20,
    "max_partition_fetch_bytes": 2**20,
}
# (name, consumer settings, per-record work, processes)
CONSUMER_VARIANTS = [
    ("kafka-python defaults, records only", {}, "none", 1),
    ("dashboard settings, records only", DASHBOARD_CONSUMER, "none", 1),
    ("dashboard settings + json.loads", DASHBOARD_CONSUMER, "json", 1),
    ("dashboard settings + orjson.loads", DASHBOARD_CONSUMER, "orjson", 1),
    ("dashboard settings + parse_fix (what the dashboard does)", DASHBOARD_CONSUMER, "parse_fix", 1),
    ("max_poll_records 5000, 8 MiB fetches + parse_fix", BIG_POLLS, "parse_fix", 1),
    ("fetch_min_bytes 64 KiB + parse_fix", {**DASHBOARD_CONSUMER, "fetch_min_bytes": 65536}, "parse_fix", 1),
    ("two processes, 3 partitions each + parse_fix", DASHBOARD_CONSUMER, "parse_fix", 2),
]
SCRIPT_TIME = re.compile(r"Execution time: ([\d.]+) secs")


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.kafka_ceiling", __doc__, QUICK, "kafka_ceiling")
    parser.add_argument("--messages", type=int, default=300_000, help="fixes per run")
    parser.add_argument("--reps", type=int, default=3, help="runs per row (median reported)")
    return parser


# --- producer -------------------------------------------------------------------------------------


def producer_part(args: argparse.Namespace, topic: str, records: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    rows = []
    for name, setting in PRODUCER_SETTINGS.items():
        runs = [producer_ceiling(args.bootstrap_servers, topic, records, setting) for _ in range(args.reps)]
        rows.append(row_of(name, [r["rate"] for r in runs], [r["cpu_per_fix_us"] for r in runs]))
    size = round(statistics.fmean(len(v) for _, v in records))
    script = [
        PYTHON,
        "-m",
        "kafka.benchmarks.producer_performance",
        "--bootstrap-servers",
        args.bootstrap_servers,
        "--topic",
        topic,
        "--num-records",
        str(len(records)),
        "--record-size",
        str(size),
        "--stats-interval",
        "60",
        "--producer-config",
        f"linger_ms={ProducerOptions.linger_ms}",
        f"batch_size={ProducerOptions.batch_size}",
    ]
    rates = [len(records) / script_seconds(script) for _ in range(args.reps)]
    rows.append(row_of(f"kafka.benchmarks.producer_performance ({size}-byte zero records, linger 20 ms)", rates, []))
    return rows


def script_seconds(command: list[str]) -> float:
    out = subprocess.run(command, capture_output=True, text=True, timeout=600).stdout
    match = SCRIPT_TIME.search(out)
    if match is None:
        raise RuntimeError(f"no 'Execution time' in the output of {' '.join(command[:4])}: {out[-500:]}")
    return float(match.group(1))


def row_of(name: str, rates: list[float], cpu_us: list[float]) -> dict[str, Any]:
    return {
        "what": name,
        "fixes_per_s": round(statistics.median(rates)),
        "cpu_us_per_fix": round(statistics.median(cpu_us), 2) if cpu_us else None,
        "runs": [round(r) for r in rates],
    }


# --- consumer -------------------------------------------------------------------------------------


def consume(
    bootstrap: str, topic: str, partitions: list[int], count: int, config: dict, work: str, lean: bool = False
) -> dict:
    """Read ``count`` records from the start of ``partitions`` in this (fresh) process; rate and CPU.
    ``lean``: unpack the fetched records with bus/lean_fetch.py, as the project's consumers do."""
    factory = lean_consumer if lean else KafkaConsumer
    consumer = factory(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, **config)
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    wanted = min(count, sum(ends.values()))
    decode = {"none": None, "json": json.loads, "orjson": orjson.loads}.get(work)
    now = time.time()
    seen = 0
    cpu0, started = time.process_time(), time.perf_counter()
    while seen < wanted:
        for batch in consumer.poll(timeout_ms=1000).values():
            seen += len(batch)
            if work == "parse_fix":
                for record in batch:
                    try:
                        parse_fix(record.value, now)
                    except InvalidMessage:
                        pass
            elif decode is not None:
                for record in batch:
                    decode(record.value)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    consumer.close()
    return {"records": seen, "seconds": seconds, "cpu_s": cpu}


def consumer_run(args: argparse.Namespace, topic: str, config: dict, work: str, processes: int) -> dict:
    shares = [list(range(PARTITIONS))[i::processes] for i in range(processes)]
    per_process = args.messages // processes
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [
            pool.submit(consume, args.bootstrap_servers, topic, share, per_process, config, work) for share in shares
        ]
        results = [f.result() for f in futures]
    records = sum(r["records"] for r in results)
    return {
        "rate": records / max(r["seconds"] for r in results),
        "cpu_us": sum(r["cpu_s"] for r in results) / records * 1e6,
    }


def consume_in_fresh_process(bootstrap: str, topic: str, count: int, lean: bool = False) -> dict:
    """The floor of bench/dashboard_ingest.py: ``count`` records of ``topic`` read from its start by a fresh
    process with the driver feed's settings, each decoded by ``parse_fix``; ``cpu_us`` per record.
    ``lean``: with the records unpacked by bus/lean_fetch.py."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        result = pool.submit(
            consume, bootstrap, topic, list(range(PARTITIONS)), count, DASHBOARD_CONSUMER, "parse_fix", lean
        ).result()
    return {"records": result["records"], "cpu_us": result["cpu_s"] / max(1, result["records"]) * 1e6}


def consumer_part(args: argparse.Namespace, topic: str) -> list[dict[str, Any]]:
    rows = []
    for name, config, work, processes in CONSUMER_VARIANTS:
        runs = [consumer_run(args, topic, config, work, processes) for _ in range(args.reps)]
        rows.append(row_of(name, [r["rate"] for r in runs], [r["cpu_us"] for r in runs]))
        print(f"  {name}: {rows[-1]['fixes_per_s']:,} fixes/s", flush=True)
    script = [
        PYTHON,
        "-m",
        "kafka.benchmarks.consumer_performance",
        "--bootstrap-servers",
        args.bootstrap_servers,
        "--topic",
        topic,
        "--num-records",
        str(args.messages),
        "--stats-interval",
        "60",
        "--consumer-config",
        "group_id=None",
        "consumer_timeout_ms=10000",
    ]
    rates = [args.messages / script_seconds(script) for _ in range(args.reps)]
    rows.append(row_of("kafka.benchmarks.consumer_performance (defaults, iterator)", rates, []))
    return rows


COLUMNS = [("what", "what", ""), ("fixes_per_s", "fixes/s", ",.0f"), ("cpu_us_per_fix", "CPU us/fix", ".2f")]


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "kafka ceiling")
    records = sample_fixes(args.messages)
    size = statistics.fmean(len(v) for _, v in records)
    result: dict[str, Any] = {"machine": info, "fix_bytes_mean": round(size, 1), "messages": len(records)}
    with Topic(args.bootstrap_servers, "ceiling") as topic:
        print(f"\n[producer] {len(records):,} fixes of {size:.0f} bytes into {topic.name}", flush=True)
        result["producer"] = producer_part(args, topic.name, records)
        print_table(f"producer, median of {args.reps}", result["producer"], COLUMNS)
        print(
            f"\n[consumer] {args.messages:,} fixes from the start of {topic.name}, a fresh process per run", flush=True
        )
        result["consumer"] = consumer_part(args, topic.name)
        print_table(f"consumer, median of {args.reps}", result["consumer"], COLUMNS)
    result["command"] = command_line("bench.kafka_ceiling", argv)
    result["configuration"] = vars(args) | {"json": None}
    write_result(args.json or result_path("kafka_ceiling", args.quick), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
