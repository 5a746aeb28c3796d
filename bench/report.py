"""Markdown tables of the suite's latest results, for docs/benchmarks.md.

.venv/bin/python -m bench.report                  # bench/results/{pipeline,browser_fps,kafka_ceiling}.json
.venv/bin/python -m bench.report --dir test-artifacts/bench-quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import browser_fps, kafka_ceiling, pipeline
from bench.common import RESULTS_DIR, describe, markdown_table


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=RESULTS_DIR, help="where the JSON results are")
    return parser


def load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def pipeline_section(result: dict[str, Any]) -> list[str]:
    out = [f"pipeline: {describe(result['machine'])}", f"`{result['command']}`", ""]
    for server in (pipeline.OURS, pipeline.TUTORIAL):
        rows = [pipeline.table_row(r) for r in result["runs"] if r["server"] == server and "median" in r]
        if rows:
            out += [f"**{server}**", "", markdown_table(rows, pipeline.COLUMNS), ""]
            out += [markdown_table(rows, EXTRA_COLUMNS), ""]
    if result.get("ratios"):
        out += ["**ours / tutorial**", "", markdown_table(result["ratios"], pipeline.RATIO_COLUMNS), ""]
    for run in result["runs"]:
        if run.get("aborted"):
            out.append(f"- {run['server']} {run['drivers']}x{run['clients']} aborted: {run['aborted']}")
    return out


# Where the CPU went in each run, and how the figures varied between windows.
EXTRA_COLUMNS = [
    ("drivers", "drivers", ","),
    ("clients", "clients", ""),
    ("server_cpu_pct", "server CPU %", ".0f"),
    ("simulator_cpu_pct", "simulator CPU %", ".0f"),
    ("broker_cpu_pct", "broker CPU %", ".0f"),
    ("clients_cpu_pct", "clients CPU %", ".0f"),
    ("machine_cpu_pct", "machine CPU % (of 200)", ".0f"),
    ("server_rss_mib_max", "RSS MiB", ".0f"),
    ("client_seconds_all_fresh", "client-seconds all fresh", ".2%"),
    ("fresh_share_mean", "fresh mean", ".3%"),
    ("delivered_per_server_cpu_s", "fixes per CPU s", ",.0f"),
]


def main(argv: list[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    sections: list[str] = []
    result = load(args.dir, "pipeline")
    if result:
        sections += pipeline_section(result)
    result = load(args.dir, "browser_fps")
    if result:
        rows = [
            {**r["median"], "drivers": r["drivers"], "meets_30_fps": r["median"]["fps"] >= browser_fps.TARGET_FPS}
            for r in result["fleets"]
        ]
        sections += [
            f"browser: {describe(result['machine'])}",
            f"`{result['command']}`",
            "",
            markdown_table(rows, browser_fps.COLUMNS),
            "",
        ]
    result = load(args.dir, "kafka_ceiling")
    if result:
        sections += [f"kafka: {describe(result['machine'])}", f"`{result['command']}`", ""]
        for part in ("producer", "consumer"):
            sections += [f"**{part}**", "", markdown_table(result[part], kafka_ceiling.COLUMNS), ""]
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
