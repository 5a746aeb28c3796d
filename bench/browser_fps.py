"""The map page in headless Chromium with 1,000, 10,000 and 30,000 moving drivers: frame rate and heap.

For each fleet size: a fresh topic, ``python -m simulator`` (paced, 1 s interval; two from 20,000 drivers), ``python -m
dashboard`` with tiles off (``TILE_URL=none``), and the page in Debian's chromium driven by
Playwright (the flags of tests/test_page_browser.py). Once the page holds the whole fleet, --reps
windows of --duration seconds each record every ``requestAnimationFrame`` timestamp: frames per
second, the 95th/99th percentile and worst frame interval, the share of frames over 33 ms, the page's
own cost per frame (``fleetDebug.frameCost()``: what our code spends in each frame), the JS heap
(CDP ``Runtime.getHeapUsage``) and the CPU of Chromium's processes. Medians over the windows.

    .venv/bin/python -m bench browser
    .venv/bin/python -m bench.browser_fps --drivers 10000 --reps 3 --duration 20

Beside the page, with the same fleet's simulator and dashboard still running (the same load) and in
the same browser, two hand-written drawings of as many moving dots (no data, no map) give the best
technique's frame rate: one canvas path for all drivers (one arc each, one fill), and WebGL points
(one draw call; software GL, SwiftShader, in headless Chromium here). The table shows the page's fps
as a share of each, and the goal of issue 15: 30,000 drivers at 20 fps or more, 10,000 at 40 or more.
``--static-from DIR`` serves the page's modules from DIR/js/ instead (an A/B against another version).

Prints a table and writes bench/results/browser_fps.json; a screenshot per fleet size goes to
test-artifacts/bench-logs/.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
from playwright.sync_api import Browser, sync_playwright

from bench.common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DASHBOARD_ENV,
    LOG_DIR,
    Child,
    Topic,
    bench_parser,
    command_line,
    dashboard_command,
    free_port,
    http_ok,
    medians,
    parse_and_describe,
    percentile,
    print_table,
    result_path,
    simulator_commands,
    stop_all,
    wait_until,
    write_result,
)

VIEWPORT = {"width": 1280, "height": 800}
TARGET_FPS = 30.0
GOAL_FPS = {10_000: 40.0, 30_000: 20.0}  # issue 15
SLOW_FRAME_MS = 1000.0 / TARGET_FPS
QUICK = {"drivers": "10000,30000", "duration": 5.0, "reps": 1}
# Records every animation frame's timestamp for ``ms`` milliseconds, and the page's own cost each second.
MEASURE_JS = """
(ms) => new Promise((resolve) => {
  const stamps = [];
  const costs = [];
  const start = performance.now();
  const timer = setInterval(() => { const c = fleetDebug.frameCost(); if (c) costs.push(c); }, 1000);
  function step(t) {
    stamps.push(t);
    if (t - start < ms) { requestAnimationFrame(step); return; }
    clearInterval(timer);
    resolve({stamps, costs, drivers: fleetDebug.drivers(), drawn: fleetDebug.drawn(),
             jsHeapUsed: performance.memory ? performance.memory.usedJSHeapSize : null});
  }
  requestAnimationFrame(step);
})
"""


# The hand-written baselines: `n` dots gliding between random fixes a second apart (typed-array
# interpolation, as the page does), coloured by one of four statuses, drawn every frame for `ms`.
BASELINE_JS = """
([kind, n, ms, w, h]) => new Promise((resolve) => {
  const canvas = document.createElement('canvas');
  canvas.width = w; canvas.height = h;
  document.body.style.margin = '0';
  document.body.appendChild(canvas);
  const ax = new Float64Array(n), ay = new Float64Array(n), bx = new Float64Array(n), by = new Float64Array(n);
  const x = new Float32Array(2 * n), status = new Float32Array(n);
  for (let i = 0; i < n; i += 1) {
    bx[i] = ax[i] = Math.random() * w; by[i] = ay[i] = Math.random() * h; status[i] = i % 4;
  }
  let t1 = performance.now();
  function place(now) {
    if (now - t1 >= 1000) {
      for (let i = 0; i < n; i += 1) {
        ax[i] = bx[i]; ay[i] = by[i]; bx[i] += Math.random() * 6 - 3; by[i] += Math.random() * 6 - 3;
      }
      t1 = now;
    }
    const f = Math.min(1, (now - t1) / 1000);
    for (let i = 0; i < n; i += 1) {
      x[2 * i] = ax[i] + (bx[i] - ax[i]) * f; x[2 * i + 1] = ay[i] + (by[i] - ay[i]) * f;
    }
  }
  let draw;
  if (kind === 'canvas') {
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#009e73';
    draw = (now) => {
      place(now);
      ctx.clearRect(0, 0, w, h);
      ctx.beginPath();
      for (let i = 0; i < n; i += 1) {
        ctx.moveTo(x[2 * i] + 2.7, x[2 * i + 1]); ctx.arc(x[2 * i], x[2 * i + 1], 2.7, 0, 6.2832);
      }
      ctx.fill();
    };
  } else {
    const gl = canvas.getContext('webgl');
    if (!gl) { resolve(null); return; }
    const shader = (type, src) => {
      const s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s); return s;
    };
    const program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER, `attribute vec2 p; attribute float s; uniform vec2 size;
      varying float v; void main() {
        gl_Position = vec4(p / size * vec2(2.0, -2.0) + vec2(-1.0, 1.0), 0.0, 1.0); gl_PointSize = 6.0; v = s;
      }`));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER, `precision mediump float; varying float v;
      void main() { if (length(gl_PointCoord - 0.5) > 0.5) discard;
        gl_FragColor = v < 0.5 ? vec4(0.84, 0.37, 0.0, 1.0) : v < 1.5 ? vec4(0.0, 0.62, 0.45, 1.0)
          : v < 2.5 ? vec4(0.0, 0.37, 0.66, 1.0) : vec4(0.49, 0.52, 0.59, 1.0); }`));
    gl.linkProgram(program);
    gl.useProgram(program);
    gl.uniform2f(gl.getUniformLocation(program, 'size'), w, h);
    const positions = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, positions);
    gl.bufferData(gl.ARRAY_BUFFER, x.byteLength, gl.DYNAMIC_DRAW);
    const p = gl.getAttribLocation(program, 'p');
    gl.enableVertexAttribArray(p);
    gl.vertexAttribPointer(p, 2, gl.FLOAT, false, 0, 0);
    const statuses = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, statuses);
    gl.bufferData(gl.ARRAY_BUFFER, status, gl.STATIC_DRAW);
    const sl = gl.getAttribLocation(program, 's');
    gl.enableVertexAttribArray(sl);
    gl.vertexAttribPointer(sl, 1, gl.FLOAT, false, 0, 0);
    gl.viewport(0, 0, w, h);
    draw = (now) => {
      place(now);
      gl.bindBuffer(gl.ARRAY_BUFFER, positions);
      gl.bufferSubData(gl.ARRAY_BUFFER, 0, x);
      gl.clearColor(0, 0, 0, 0);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.drawArrays(gl.POINTS, 0, n);
    };
  }
  const stamps = [];
  let start = null;
  function step(t) {
    draw(t);
    if (start === null) start = t;
    stamps.push(t);
    if (t - start < ms) { requestAnimationFrame(step); return; }
    resolve(stamps);
  }
  requestAnimationFrame(step);
})
"""
BASELINES = ("canvas", "webgl")


def main_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bench.browser_fps", __doc__, QUICK, "browser_fps")
    parser.add_argument("--drivers", default="1000,10000,30000", help="fleet sizes, drivers at 1 Hz")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measured window")
    parser.add_argument("--reps", type=int, default=3, help="windows per fleet size (medians reported)")
    parser.add_argument("--no-baselines", action="store_true", help="measure the page only")
    parser.add_argument("--static-from", type=Path, help="serve the page's static/js modules from DIR/js/")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then V8's sampling profiler for one more window: where the page's time goes",
    )
    return parser


def chromium_cpu_s() -> float:
    """CPU seconds of every chromium process (browser, renderer, utility) so far."""
    total = 0.0
    for process in psutil.process_iter(["exe", "cpu_times"]):
        if process.info["exe"] and process.info["exe"].startswith("/usr/lib/chromium") and process.info["cpu_times"]:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def renderer_main_cpu_s() -> float:
    """CPU seconds so far of the main thread of every Chromium renderer (its first thread): the page's JS and paint.

    A CPU measure beside the wall-clock frame rate, which moves with whatever else the machine runs."""
    total = 0.0
    for process in psutil.process_iter(["exe", "cmdline"]):
        if not (process.info["exe"] or "").startswith("/usr/lib/chromium"):
            continue
        if "--type=renderer" not in (process.info["cmdline"] or []):
            continue
        try:
            total += sum(t.user_time + t.system_time for t in process.threads() if t.id == process.pid)
        except psutil.Error:
            continue
    return total


def frame_figures(measured: dict[str, Any], heap: dict[str, Any], cpu_s: float, main_s: float) -> dict[str, Any]:
    stamps = measured["stamps"]
    intervals = sorted(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    seconds = (stamps[-1] - stamps[0]) / 1000.0
    costs = measured["costs"]
    return {
        "fps": round((len(stamps) - 1) / seconds, 1),
        "frame_p50_ms": round(percentile(intervals, 50), 1),
        "frame_p95_ms": round(percentile(intervals, 95), 1),
        "frame_p99_ms": round(percentile(intervals, 99), 1),
        "frame_max_ms": round(intervals[-1], 1),
        "slow_frames_share": round(sum(i > SLOW_FRAME_MS for i in intervals) / len(intervals), 4),
        "page_cost_mean_ms": round(statistics.fmean(c["meanMs"] for c in costs), 2) if costs else None,
        "page_cost_max_ms": round(max(c["maxMs"] for c in costs), 1) if costs else None,
        "drivers_held": measured["drivers"],
        "drivers_drawn": measured["drawn"],
        "js_heap_used_mib": round(heap["usedSize"] / 2**20, 1),
        "js_heap_total_mib": round(heap["totalSize"] / 2**20, 1),
        "chromium_cpu_pct": round(100 * cpu_s / seconds, 1),
        "chromium_cpu_ms_per_frame": round(1000 * cpu_s / (len(stamps) - 1), 2),
        "main_thread_cpu_ms_per_frame": round(1000 * main_s / (len(stamps) - 1), 2),
    }


def measure_fleet(browser: Browser, args: argparse.Namespace, drivers: int) -> dict[str, Any]:
    with Topic(args.bootstrap_servers, "browser") as topic:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = dashboard_command(port, topic.name, args.bootstrap_servers)
        dashboard = Child(f"browser-dashboard-{drivers}", command, DASHBOARD_ENV)
        children = [dashboard]
        context = None
        profile = None
        try:
            wait_until(lambda: http_ok(base + "/healthz"), 60, "the dashboard is healthy", children)
            total_s = 60 + args.reps * (args.duration + 5)
            commands = simulator_commands(drivers, topic.name, args.bootstrap_servers, total_s)
            children += [Child(f"browser-simulator-{drivers}-{i}", c) for i, c in enumerate(commands)]
            context = browser.new_context(viewport=VIEWPORT)
            if args.static_from:
                serve_modules_from(context, args.static_from)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/")
            page.wait_for_function(
                "n => window.fleetDebug && fleetDebug.drivers() >= n", arg=drivers, timeout=90_000, polling=500
            )
            time.sleep(3.0)  # the fit-to-fleet animation and the first full frames
            page.screenshot(path=LOG_DIR / f"browser-{drivers}.png")
            cdp = context.new_cdp_session(page)
            windows = []
            for rep in range(args.reps):
                cpu0 = chromium_cpu_s()
                main0 = renderer_main_cpu_s()
                measured = page.evaluate(MEASURE_JS, args.duration * 1000)
                cpu = chromium_cpu_s() - cpu0
                main = renderer_main_cpu_s() - main0
                heap = cdp.send("Runtime.getHeapUsage")
                windows.append(frame_figures(measured, heap, cpu, main))
                w = windows[-1]
                print(
                    f"  window {rep + 1}: {w['fps']} fps, p95 {w['frame_p95_ms']} ms, page cost "
                    f"{w['page_cost_mean_ms']} ms/frame, main thread CPU {w['main_thread_cpu_ms_per_frame']} ms/frame, "
                    f"heap {w['js_heap_used_mib']} MiB",
                    flush=True,
                )
            profile = page_profile(cdp, args.duration) if args.profile else None
            page.close()
            baselines = {} if args.no_baselines else measure_baselines(context, args, drivers)
        finally:
            if context is not None:
                context.close()
            stop_all(reversed(children))
    result = {
        "drivers": drivers,
        "page_errors": errors,
        "windows": windows,
        "median": medians(windows),
        "baselines": baselines,
    }
    if profile is not None:
        result["profile"] = profile
        print("  profile (self time): " + ", ".join(f"{f['self_pct']}% {f['function']}" for f in profile[:8]))
    return result


def serve_modules_from(context: Any, folder: Path) -> None:
    """Answer requests for /static/js/NAME.js with folder/js/NAME.js where that file exists."""

    def answer(route: Any) -> None:
        name = route.request.url.split("?")[0].rsplit("/", 1)[-1]
        path = folder / "js" / name
        if path.is_file():
            route.fulfill(path=str(path), content_type="text/javascript")
        else:
            route.continue_()

    context.route("**/static/js/*.js", answer)


def measure_baselines(context: Any, args: argparse.Namespace, drivers: int) -> dict[str, Any]:
    """The hand-written drawings of `drivers` dots, --reps windows each, under the same load (median fps)."""
    figures: dict[str, Any] = {}
    for kind in BASELINES:
        page = context.new_page()
        try:
            fps = []
            for _ in range(args.reps):
                stamps = page.evaluate(
                    BASELINE_JS, [kind, drivers, args.duration * 1000, VIEWPORT["width"], VIEWPORT["height"]]
                )
                page.set_content("<html><body></body></html>")
                if stamps:
                    fps.append(round((len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000.0), 1))
            figures[kind] = {"fps_windows": fps, "fps": round(statistics.median(fps), 1) if fps else None}
            print(f"  baseline {kind}: {figures[kind]['fps']} fps (windows {fps})", flush=True)
        finally:
            page.close()
    return figures


def page_profile(cdp: Any, seconds: float, top: int = 15) -> list[dict[str, Any]]:
    """Self time by function over ``seconds`` from V8's sampling profiler (CDP ``Profiler``), idle included."""
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
    cdp.send("Profiler.start")
    time.sleep(seconds)
    profile = cdp.send("Profiler.stop")["profile"]
    names = {}
    for node in profile["nodes"]:
        frame = node["callFrame"]
        where = Path(frame["url"]).name if frame["url"] else ""
        names[node["id"]] = f"{frame['functionName'] or '(anonymous)'} {where}:{frame['lineNumber'] + 1}".strip()
    counts: dict[str, int] = {}
    for node_id in profile["samples"]:
        counts[names[node_id]] = counts.get(names[node_id], 0) + 1
    total = sum(counts.values()) or 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [{"function": name, "self_pct": round(100 * n / total, 1)} for name, n in ranked]


COLUMNS = [
    ("drivers", "drivers", ","),
    ("drivers_drawn", "drawn", ",.0f"),
    ("fps", "fps", ".1f"),
    ("frame_p50_ms", "p50 ms", ".1f"),
    ("frame_p95_ms", "p95 ms", ".1f"),
    ("frame_p99_ms", "p99 ms", ".1f"),
    ("frame_max_ms", "max ms", ".0f"),
    ("slow_frames_share", "frames > 33 ms", ".1%"),
    ("page_cost_mean_ms", "page ms/frame", ".2f"),
    ("js_heap_used_mib", "JS heap MiB", ".1f"),
    ("chromium_cpu_pct", "chromium CPU %", ".0f"),
    ("main_thread_cpu_ms_per_frame", "main thread CPU ms/frame", ".2f"),
    ("meets_30_fps", ">= 30 fps", ""),
    ("canvas_path_fps", "one-path fps", ".1f"),
    ("webgl_fps", "WebGL fps", ".1f"),
    ("vs_canvas_path", "page / one-path", ".2f"),
    ("vs_webgl", "page / WebGL", ".2f"),
    ("goal", "goal (issue 15)", ""),
]


def table_row(result: dict[str, Any]) -> dict[str, Any]:
    row = {**result["median"], "drivers": result["drivers"], "meets_30_fps": result["median"]["fps"] >= TARGET_FPS}
    fps = row["fps"]
    for kind, column in (("canvas", "canvas_path"), ("webgl", "webgl")):
        base = (result.get("baselines") or {}).get(kind, {}).get("fps")
        row[f"{column}_fps"] = base
        row[f"vs_{column}"] = round(fps / base, 2) if base else None
    goal = GOAL_FPS.get(result["drivers"])
    row["goal"] = "" if goal is None else f">= {goal:g}: {'met' if fps >= goal else 'NOT met'}"
    return row


def main(argv: list[str] | None = None) -> int:
    args, info = parse_and_describe(main_parser(), argv, QUICK, "browser")
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for drivers in (int(d) for d in args.drivers.split(",")):
                print(f"\n[browser] {drivers} drivers: {args.reps} x {args.duration:g} s", flush=True)
                results.append(measure_fleet(browser, args, drivers))
        finally:
            browser.close()
    rows = [table_row(r) for r in results]
    print_table(f"the map page, medians of {args.reps} windows of {args.duration:g} s", rows, COLUMNS)
    command = command_line("bench.browser_fps", argv)
    configuration = vars(args) | {"json": None, "static_from": args.static_from and str(args.static_from)}
    write_result(
        args.json or result_path("browser_fps", args.quick),
        {"machine": info, "command": command, "configuration": configuration, "fleets": results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
