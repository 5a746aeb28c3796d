"""How many fixes per second one simulator process sustains, and where its time goes.

Three parts, each against the broker named by --bootstrap-servers (the local one by default):

1. producer: kafka-python alone, sending pre-built fixes as fast as it can, for several
   linger / batch size / compression settings: the ceiling, and which batching pays.
2. paced: ``python -m simulator`` itself at 1 s intervals for growing fleets (and, with
   --processes, several simulators sharing the fleet): achieved rate against target, the rate
   error, the worst lag, and the CPU of the simulator's threads and of the broker (also in µs per
   fix); a 30,000-driver run ends with issue 15's goal line (within 1 %) beside the figure before.
3. profile: one paced run in-process under cProfile: where the send loop spends its time.

    .venv/bin/python -m bench.simulator_rate
    .venv/bin/python -m bench.simulator_rate --drivers 10000 --duration 30 --parts paced

Each paced run reads the simulators' summary lines (``{"summary": ...}`` on stdout, docs/api.md).
Prints a table per part and writes everything to bench/results/simulator_rate.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from itertools import product
from pathlib import Path

import psutil
from kafka import KafkaProducer
from kafka.codec import has_lz4

from bench.common import (
    Simulators,
    Topic,
    bench_parser,
    broker_process,
    command_line,
    cpu_seconds,
    parse_and_describe,
    result_path,
    simulator_commands,
    write_result,
)
from fleet.schema import encode_fix, encode_key
from simulator.fleet_model import FleetConfig, SimulatedFleet
from simulator.producer import ProducerOptions, RunConfig, run
from simulator.status import StatusMix

QUICK = {"parts": "paced", "drivers": "1000,30000", "duration": 8.0}
# The batching settings compared in part 1: kafka-python's defaults first.
PRODUCER_SETTINGS = [
    (0, 16384, None),
    (5, 65536, None),
    (20, 131072, None),
    (50, 262144, None),
    (20, 131072, "gzip"),
    (20, 131072, "lz4"),  # only when the lz4 package is installed
]
MAX_RATE_ERROR = 0.02
# Issue 15's goal: one process, 30,000 drivers at 1 Hz, within 1 %; and where it stood before
# (docs/benchmarks.md, "Simulator", the 2026-11-26 run, per fix: CPU % of a core / fixes per s).
GOAL = {"drivers": 30000, "rate_error_pct": 1.0}
BEFORE = {
    "date": "2026-11-26",
    "achieved_per_s": 25062.7,
    "rate_error_pct": -16.46,
    "cpu_main_us_per_fix": 33.5,
    "cpu_sender_us_per_fix": 6.8,
}


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.simulator_rate", __doc__, QUICK, "simulator_rate")
    parser.add_argument("--parts", default="producer,paced,profile", help="which parts to run, comma-separated")
    parser.add_argument("--drivers", default="5000,10000,20000,30000", help="fleet sizes for the paced part")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two fixes of one driver")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per paced run")
    parser.add_argument("--processes", default="1", help="simulator processes per paced run, comma-separated")
    parser.add_argument("--messages", type=int, default=60000, help="fixes per producer-part run")
    parser.add_argument("--reps", type=int, default=3, help="producer-part runs per setting (median kept)")
    parser.add_argument(
        "--riders-per-minute",
        default="0",
        help="ride requests a minute in the paced part, comma-separated to compare (e.g. 0,600); "
        "requests and answers go to topics of the run's own",
    )
    parser.add_argument("--profile-drivers", type=int, default=10000, help="fleet size of the profile part")
    parser.add_argument("--profile-duration", type=float, default=15.0, help="seconds of the profile part")
    parser.add_argument("--linger-ms", type=int, default=ProducerOptions.linger_ms, help="paced and profile parts")
    parser.add_argument("--batch-size", type=int, default=ProducerOptions.batch_size, help="paced and profile parts")
    return parser


# --- part 1: the producer alone -----------------------------------------------------------------


def sample_fixes(count: int) -> list[tuple[bytes, bytes]]:
    fleet = SimulatedFleet(FleetConfig(drivers=10000, mix=StatusMix(offline_share=0.0)), seed=1)
    fixes = (fleet.fix_for_slot(slot, time.time()) for slot in range(count))
    return [(encode_key(f.driver_id), encode_fix(f)) for f in fixes if f is not None]


def producer_ceiling(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], setting: tuple) -> dict:
    linger_ms, batch_size, compression = setting
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        **ProducerOptions(linger_ms=linger_ms, batch_size=batch_size, compression=compression).kafka_config(),
    )
    producer.partitions_for(topic)
    acked = [0]

    def on_ack(_metadata: object) -> None:
        acked[0] += 1

    me = psutil.Process()
    cpu0, start = cpu_seconds(me), time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value).add_callback(on_ack)
    producer.flush()
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(me) - cpu0
    producer.close()
    assert acked[0] == len(records), f"{acked[0]} of {len(records)} acknowledged"
    return {"rate": len(records) / seconds, "cpu_per_fix_us": cpu / len(records) * 1e6}


def part_producer(args: argparse.Namespace, topic: str) -> list[dict]:
    records = sample_fixes(args.messages)
    print(
        f"\n[producer] {len(records)} fixes of {statistics.mean(len(v) for _, v in records):.0f} bytes, "
        f"median of {args.reps} runs per setting"
    )
    print(f"{'linger_ms':>9} {'batch_size':>10} {'compression':>11} {'fixes/s':>9} {'CPU us/fix':>10}")
    rows = []
    for setting in [s for s in PRODUCER_SETTINGS if s[2] != "lz4" or has_lz4()]:
        runs = [producer_ceiling(args.bootstrap_servers, topic, records, setting) for _ in range(args.reps)]
        rate = statistics.median(r["rate"] for r in runs)
        cpu = statistics.median(r["cpu_per_fix_us"] for r in runs)
        linger_ms, batch_size, compression = setting
        print(f"{linger_ms:>9} {batch_size:>10} {compression or 'none':>11} {rate:>9,.0f} {cpu:>10.1f}")
        rows.append(
            {
                "linger_ms": linger_ms,
                "batch_size": batch_size,
                "compression": compression,
                "fixes_per_s": round(rate),
                "cpu_us_per_fix": round(cpu, 1),
                "runs": [round(r["rate"]) for r in runs],
            }
        )
    return rows


# --- part 2: the simulator, paced ---------------------------------------------------------------


def simulator_flags(args: argparse.Namespace, topic: str, riders: float) -> list[str]:
    """Batching and riders: what the paced part sets beyond the shared simulator command."""
    return [
        "--linger-ms",
        str(args.linger_ms),
        "--batch-size",
        str(args.batch_size),
        "--riders-per-minute",
        str(riders),
        "--request-topic",
        f"{topic}-requests",
        "--match-topic",
        f"{topic}-matches",
    ]


def thread_cpu(process: psutil.Process) -> dict[str, float]:
    """CPU seconds of the main thread and of all other threads (kafka-python's sender) together."""
    main_thread, others = 0.0, 0.0
    for thread in process.threads():
        if thread.id == process.pid:
            main_thread += thread.user_time + thread.system_time
        else:
            others += thread.user_time + thread.system_time
    return {"main": main_thread, "others": others}


def paced_run(args: argparse.Namespace, topic: str, drivers: int, processes: int, riders: float = 0.0) -> dict:
    commands = simulator_commands(
        drivers,
        topic,
        args.bootstrap_servers,
        args.duration,
        processes,
        args.interval,
        simulator_flags(args, topic, riders),
    )
    with Simulators(f"simulator-rate-{drivers}x{processes}", commands) as simulators:
        broker = broker_process()
        # Threads are sampled from 3 s in to 1 s before the end: the steady state, without start-up.
        time.sleep(3.0)
        broker_cpu0 = cpu_seconds(broker)
        early = [thread_cpu(h) for h in simulators.handles]
        steady_s = max(args.duration - 4.0, 1.0)
        time.sleep(steady_s)
        late = [thread_cpu(h) for h in simulators.handles]
        broker_cpu = cpu_seconds(broker) - broker_cpu0
        summaries = simulators.summaries(timeout_s=args.duration + 120)
    sent = sum(s["sent"] for s in summaries)
    acked = sum(s["acknowledged"] for s in summaries)
    failed = sum(s["failed"] for s in summaries)
    seconds = [s["seconds"] for s in summaries]
    # Full windows only: the last one covers the few seconds before the stop.
    windows = [round(w["error_pct"], 1) for s in summaries for w in s["windows"][:-1]]
    lags = [w["max_lag_ms"] for s in summaries for w in s["windows"]]
    skipped = any(s["skipped_s"] > 0 for s in summaries)
    target = drivers / args.interval
    rate = sent / max(seconds)
    error = (rate - target) / target
    main_cpu = sum(b["main"] - a["main"] for a, b in zip(early, late, strict=True)) / steady_s
    sender_cpu = sum(b["others"] - a["others"] for a, b in zip(early, late, strict=True)) / steady_s
    # CPU per fix over the sampled seconds, at the run's achieved rate.
    per_fix_us = 1e6 / max(rate, 1e-9)
    return {
        "drivers": drivers,
        "processes": processes,
        "riders_per_minute": riders,
        "target_per_s": target,
        "achieved_per_s": round(rate, 1),
        "rate_error_pct": round(error * 100, 2),
        "worst_window_error_pct": max(windows, default=0.0, key=abs),
        "sent": sent,
        "acked": acked,
        "failed": failed,
        "max_lag_ms": max(lags, default=0),
        "skipped_ahead": skipped,
        "cpu_main_thread_pct": round(main_cpu * 100),
        "cpu_sender_threads_pct": round(sender_cpu * 100),
        "cpu_main_us_per_fix": round(main_cpu * per_fix_us, 1),
        "cpu_sender_us_per_fix": round(sender_cpu * per_fix_us, 1),
        "cpu_broker_pct": round(broker_cpu / steady_s * 100) if broker else None,
        "sustained": abs(error) < MAX_RATE_ERROR and acked == sent and not skipped,
    }


def part_paced(args: argparse.Namespace, topic: str) -> list[dict]:
    print(
        f"\n[paced] python -m simulator, {args.duration:g} s per run, interval {args.interval:g} s, "
        f"linger {args.linger_ms} ms, batch {args.batch_size} bytes"
    )
    print(
        f"{'drivers':>8} {'procs':>5} {'riders/min':>10} {'target/s':>9} {'achieved/s':>10} {'error':>7} "
        f"{'worst 5s':>8} {'max lag':>8} {'acked':>6} {'CPU main':>8} {'sender':>7} {'broker':>7} "
        f"{'us/fix main':>11} {'sender':>6}  sustained"
    )
    rows = []
    rider_rates = [float(r) for r in args.riders_per_minute.split(",")]
    for processes in (int(p) for p in args.processes.split(",")):
        for drivers, riders in product((int(d) for d in args.drivers.split(",")), rider_rates):
            row = paced_run(args, topic, drivers, processes, riders)
            rows.append(row)
            acked = "all" if row["acked"] == row["sent"] else f"{row['acked'] / row['sent']:.1%}"
            broker = f"{row['cpu_broker_pct']}%" if row["cpu_broker_pct"] is not None else "-"
            print(
                f"{drivers:>8} {processes:>5} {riders:>10g} {row['target_per_s']:>9,.0f} "
                f"{row['achieved_per_s']:>10,.1f} "
                f"{row['rate_error_pct']:>+6.2f}% {row['worst_window_error_pct']:>+7.1f}% "
                f"{row['max_lag_ms']:>6} ms {acked:>6} {row['cpu_main_thread_pct']:>7}% "
                f"{row['cpu_sender_threads_pct']:>6}% {broker:>7} {row['cpu_main_us_per_fix']:>11.1f} "
                f"{row['cpu_sender_us_per_fix']:>6.1f}  {'yes' if row['sustained'] else 'NO'}"
            )  # noqa: E501
    for row in rows:
        if row["drivers"] == GOAL["drivers"] and row["processes"] == 1 and not row["riders_per_minute"]:
            print(goal_line(row))
    return rows


def goal_met(row: dict) -> bool:
    return (
        abs(row["rate_error_pct"]) < GOAL["rate_error_pct"] and row["acked"] == row["sent"] and not row["skipped_ahead"]
    )


def goal_line(row: dict) -> str:
    """Issue 15's goal beside this run's figure and the figure before."""
    b = BEFORE
    return (
        f"goal: {GOAL['drivers']:,} drivers at 1 Hz in one process within {GOAL['rate_error_pct']:g} %: "
        f"{row['achieved_per_s']:,.1f}/s ({row['rate_error_pct']:+.2f} %), CPU per fix main "
        f"{row['cpu_main_us_per_fix']:.1f} us, sender {row['cpu_sender_us_per_fix']:.1f} us: "
        f"{'MET' if goal_met(row) else 'NOT MET'}; before ({b['date']}): {b['achieved_per_s']:,.1f}/s "
        f"({b['rate_error_pct']:+.2f} %), main {b['cpu_main_us_per_fix']:.1f} us, sender "
        f"{b['cpu_sender_us_per_fix']:.1f} us"
    )


# --- part 3: profile ----------------------------------------------------------------------------


def part_profile(args: argparse.Namespace, topic: str) -> dict:
    drivers, duration = args.profile_drivers, args.profile_duration
    print(
        f"\n[profile] {drivers} drivers every {args.interval:g} s for {duration:g} s in-process under cProfile "
        "(main thread only; the sender thread's share is in the paced table)"
    )
    fleet_config = FleetConfig(drivers=drivers, interval_s=args.interval, mix=StatusMix(offline_share=0.0))
    fleet = SimulatedFleet(fleet_config, seed=1)
    config = RunConfig(
        bootstrap=args.bootstrap_servers,
        topic=topic,
        duration_s=duration,
        producer=ProducerOptions(linger_ms=args.linger_ms, batch_size=args.batch_size),
    )
    profiler = cProfile.Profile()
    profiler.enable()
    totals = run(fleet, config, threading.Event())
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime")
    total = sum(row[2] for row in stats.stats.values())  # tottime of every function
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda item: item[1][2], reverse=True
    )[:18]:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        rows.append(
            {
                "function": f"{name} ({where})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "share_pct": round(tottime / total * 100, 1),
                "cumtime_s": round(cumtime, 3),
            }
        )
    print(totals.line())
    print(f"{'share':>6} {'tottime':>8} {'calls':>9}  function")
    for row in rows:
        print(f"{row['share_pct']:>5.1f}% {row['tottime_s']:>7.2f}s {row['calls']:>9}  {row['function']}")
    groups = profile_groups(stats, total)
    print("by area: " + ", ".join(f"{name} {share:.0f}%" for name, share in groups.items()))
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumtime").print_stats(25)
    return {
        "drivers": drivers,
        "seconds": duration,
        "totals": totals.line(),
        "top_tottime": rows,
        "by_area_pct": groups,
        "cumulative": buffer.getvalue(),
    }


def profile_groups(stats: pstats.Stats, total: float) -> dict[str, float]:
    """Self time grouped by where the code lives: our model, kafka-python, json, waiting, the rest."""
    groups: dict[str, float] = {}
    for (filename, _line, name), (_cc, _calls, tottime, _cum, _callers) in stats.stats.items():
        if "/simulator/" in filename or "/fleet/" in filename or name.startswith("<built-in method math."):
            group = "simulator + schema (ours)"
        elif "/kafka/" in filename:
            group = "kafka-python send path"
        elif "json" in filename or "encoder" in filename or "orjson" in name:
            group = "json encoding"
        elif "wait" in name or "acquire" in name or "sleep" in name:
            group = "waiting (idle)"
        else:
            group = "other"
        groups[group] = groups.get(group, 0.0) + tottime
    return {k: round(v / total * 100, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "simulator_rate")
    parts = set(args.parts.split(","))
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "command": command_line("bench.simulator_rate", argv),
    }
    # Deleted afterwards with the ride topics the simulator made for runs with riders (<topic>-requests...).
    with Topic(args.bootstrap_servers, "simulator") as topic:
        print(f"broker {args.bootstrap_servers}, topic {topic.name}, crc32c {info['crc32c']}", flush=True)
        if "producer" in parts:
            result["producer"] = part_producer(args, topic.name)
        if "paced" in parts:
            result["paced"] = part_paced(args, topic.name)
            goal_rows = [r for r in result["paced"] if r["drivers"] == GOAL["drivers"] and r["processes"] == 1]
            if goal_rows:
                result["goal"] = GOAL | {"met": goal_met(goal_rows[0]), "run": goal_rows[0], "before": BEFORE}
        if "profile" in parts:
            result["profile"] = part_profile(args, topic.name)
    write_result(args.json or result_path("simulator_rate", args.quick), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
