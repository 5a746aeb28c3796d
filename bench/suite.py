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
- viewers   bench/viewers.py          hundreds of viewers through nginx, spread over several dashboards
- replay    bench/replay.py           a seek into an hour of history, 60x playback, replays beside a live fleet
- track     bench/track_read.py       one driver's hour read back from an hour of the whole fleet
- density   bench/density.py          GET /api/density at 30,000 drivers; drivers inside 1,000 zones
- hexagons  bench/density_page.py     the page's density layer: cell corners from the server or from h3-js
- zones     bench/zones.py            the zone processor: fixes/s with 100 / 1,000 / 10,000 zones, event latency

Every part takes --quick, --json and, where it has them, --bootstrap-servers, --reps and --duration
(bench/common.py's bench_parser); this suite hands each part the ones it has. Every part prints a table
and writes JSON to bench/results/ (with --quick: test-artifacts/bench-quick/, so a smoke run never
replaces measured results). Results and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from types import ModuleType

from bench import (
    browser_fps,
    dashboard_ingest,
    density,
    density_page,
    fleet_state,
    hostile_ingest,
    kafka_ceiling,
    matcher,
    pipeline,
    replay,
    simulator_rate,
    track_read,
    viewers,
    zones,
)
from bus.clients import kafka_answers
from fleet.settings import KAFKA_BOOTSTRAP_SERVERS

# Each part is a module with main_parser() and main(argv) -> exit code.
PARTS: dict[str, ModuleType] = {
    "kafka": kafka_ceiling,
    "simulator": simulator_rate,
    "matcher": matcher,
    "state": fleet_state,
    "ingest": dashboard_ingest,
    "hostile": hostile_ingest,
    "pipeline": pipeline,
    "browser": browser_fps,
    "viewers": viewers,
    "replay": replay,
    "track": track_read,
    "density": density,
    "hexagons": density_page,
    "zones": zones,
}
# The parts that never talk to Kafka (the dashboard's pure hot path, its density and zone counts).
WITHOUT_KAFKA = {"state", "density"}
# The suite's flags a part gets when its parser has them.
HANDED_DOWN = ("bootstrap_servers", "reps", "duration")


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
    parser.add_argument("--reps", type=int, help="repetitions per figure, in the parts that repeat (default: theirs)")
    duration = "seconds per measured window or paced run, in the parts that have one (default: theirs)"
    parser.add_argument("--duration", type=float, help=duration)
    parser.add_argument("--bootstrap-servers", default=KAFKA_BOOTSTRAP_SERVERS.read())
    return parser


def part_argv(part: str, args: argparse.Namespace) -> list[str]:
    """The flags this suite hands to one part: --quick, and those of HANDED_DOWN that were given and it has."""
    has = vars(PARTS[part].main_parser().parse_args([]))
    argv = ["--quick"] if args.quick else []
    for key in HANDED_DOWN:
        value = getattr(args, key)
        if value is not None and key in has:
            argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = main_parser()
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; the parts are {', '.join(PARTS)}")
    parts = args.parts or list(PARTS)
    # Checked once, so that a broker that is not up costs one line instead of every part failing after its timeout.
    if set(parts) - WITHOUT_KAFKA and not kafka_answers(args.bootstrap_servers, timeout_s=5.0):
        print(
            f"python -m bench: Kafka at {args.bootstrap_servers} does not answer; is it up? "
            "(`make bench` starts the local broker; or `make broker-start`)",
            flush=True,
        )
        return 1
    started = time.monotonic()
    failed = []
    for part in parts:
        print(f"\n===== {part} =====", flush=True)
        try:
            code = PARTS[part].main(part_argv(part, args))
        except Exception as e:  # one broken part must not hide the others' results
            print(f"{part} failed: {type(e).__name__}: {e}", flush=True)
            code = 1
        if code:
            failed.append(part)
    minutes = (time.monotonic() - started) / 60
    print(
        f"\n{len(parts) - len(failed)} parts succeeded, {len(failed)} failed"
        f"{' (' + ', '.join(failed) + ')' if failed else ''} in {minutes:.1f} min"
    )
    return 1 if failed else 0
