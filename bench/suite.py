"""`python -m bench` (`make bench`): the benchmark suite, or the parts named on the command line.

Parts (each also runs alone as `python -m bench.<module>`, with more flags; see its --help):

- kafka     bench/kafka_ceiling.py    kafka-python's producer and consumer alone: the ceiling
- simulator bench/simulator_rate.py   fixes/s one simulator sustains
- matcher   bench/matcher.py          nearest-driver queries, the matcher under load
- state     bench/fleet_state.py      the dashboard's pure-Python hot path per fix
- ingest    bench/dashboard_ingest.py fixes/s one dashboard absorbs
- hostile   bench/hostile_ingest.py   what validation costs: clean input against 1 % hostile records
- pipeline  bench/pipeline.py         simulator -> Kafka -> dashboard -> Socket.IO clients, with the
                                      tutorial dashboard as the comparison, in the same run
- browser   bench/browser_fps.py      the map page in headless Chromium: fps, frame times, JS heap

Every part prints a table and writes JSON to bench/results/ (with --quick: test-artifacts/bench-quick/,
so a smoke run never replaces measured results). Results and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench import (
    browser_fps,
    dashboard_ingest,
    fleet_state,
    hostile_ingest,
    kafka_ceiling,
    matcher,
    pipeline,
    simulator_rate,
)
from bench.common import QUICK_DIR
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS

PARTS: dict[str, Callable[[list[str] | None], int]] = {
    "kafka": kafka_ceiling.main,
    "simulator": simulator_rate.main,
    "matcher": matcher.main,
    "state": fleet_state.main,
    "ingest": dashboard_ingest.main,
    "hostile": hostile_ingest.main,
    "pipeline": pipeline.main,
    "browser": browser_fps.main,
}
NEW_PARTS = {"kafka", "pipeline", "browser", "hostile"}  # these take --quick, --reps and --duration themselves
# The older benchmarks' own flags for a smoke run of a few seconds each.
QUICK_FLAGS = {
    "simulator": ["--parts", "paced", "--drivers", "1000", "--duration", "5", "--json"],
    "matcher": ["--parts", "query", "--drivers", "1000", "--queries", "300", "--json"],
    "state": ["--drivers", "10000", "--repeats", "2", "--json"],
    "ingest": ["--parts", "paced", "--rates", "1000", "--duration", "5", "--json"],
}


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parts = ", ".join(PARTS)
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"any of {parts} (default: all, in this order)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run of each part (minutes, not an hour)")
    parser.add_argument("--reps", type=int, help="repetitions per figure (kafka, pipeline, browser; default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measured window (pipeline 60, browser 20)")
    parser.add_argument("--bootstrap-servers", default=KAFKA_BOOTSTRAP_SERVERS.read())
    return parser


def part_argv(part: str, args: argparse.Namespace) -> list[str]:
    """The flags this suite hands to one part."""
    argv = ["--bootstrap-servers", args.bootstrap_servers] if part != "state" else []
    if part in NEW_PARTS:
        argv += ["--quick"] if args.quick else []
        argv += ["--reps", str(args.reps)] if args.reps is not None else []
        if args.duration is not None and part != "kafka":
            argv += ["--duration", str(args.duration)]
    elif args.quick:
        argv += [*QUICK_FLAGS[part], str(QUICK_DIR / f"{part}.json")]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = main_parser()
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; the parts are {', '.join(PARTS)}")
    parts = args.parts or list(PARTS)
    started = time.monotonic()
    failed = []
    for part in parts:
        print(f"\n===== {part} =====", flush=True)
        try:
            code = PARTS[part](part_argv(part, args))
        except Exception as e:  # one broken part must not hide the others' results
            print(f"{part} failed: {type(e).__name__}: {e}", flush=True)
            code = 1
        if code:
            failed.append(part)
    minutes = (time.monotonic() - started) / 60
    print(f"\n{len(parts) - len(failed)} parts succeeded, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''} in {minutes:.1f} min")  # fmt: skip
    return 1 if failed else 0
