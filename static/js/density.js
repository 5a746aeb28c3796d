// Supply and demand (docs/api.md, GET /api/density): H3 cells with the free drivers and the waiting riders in
// each, asked once a second while the layer is on (never while it is off), drawn as hexagons on a canvas of their
// own under the zones and the fleet: one path per colour class, not one element per cell. The colour is free
// drivers minus waiting riders on a diverging scale (zones.css holds its colours, which the legend shows too); a
// cell where riders wait and no driver is free is also hatched and outlined, so it stands out without colour.
// The hexagons' corners are computed here with h3-js (npm, pinned, served by the dashboard, loaded the first time
// the layer is turned on), each cell's once: a cell's corners never change. bench/density_page.py measured that
// against asking the server for them (boundary=1): 2.5 times the bytes to send and parse every second and more
// server time per request, for nothing the cache here does not already hold. If h3-js cannot load, the layer asks
// the server for the corners instead.

import { worldX, worldY } from "./fleet.js";
import { setText } from "./panel.js";

const byId = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US");
const REFRESH_MS = 1000;
const CLASSES = 7;
const PADDING = 0.2; // the canvas reaches this share of the map's size past each edge, for the drags between redraws
const H3_JS = "vendor/h3-js/dist/h3-js.umd.js"; // relative, like the API: the page may be served under a prefix
const MAX_CACHED_CELLS = 50000;
let h3Loading = null;

/** h3-js (its UMD build defines window.h3), loaded once, on first use; rejects if it cannot load. */
export function loadH3() {
  if (window.h3 && typeof window.h3.cellToBoundary === "function") return Promise.resolve(window.h3);
  if (!h3Loading) {
    h3Loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = H3_JS;
      script.async = true;
      script.addEventListener("load", () => (window.h3 ? resolve(window.h3) : reject(new Error("h3-js did not define h3"))));
      script.addEventListener("error", () => reject(new Error("h3-js could not be loaded")));
      document.head.append(script);
    });
    h3Loading.catch(() => {
      h3Loading = null; // the next turn-on tries again
    });
  }
  return h3Loading;
}

/** The colour class of a cell, 0 (riders waiting, no driver) to 6 (drivers free): free drivers minus waiting riders. */
export function densityClass(available, waiting) {
  const d = (available || 0) - (waiting || 0);
  if (d <= -5) return 0;
  if (d <= -2) return 1;
  if (d === -1) return 2;
  if (d === 0) return 3;
  if (d === 1) return 4;
  if (d <= 4) return 5;
  return 6;
}

/** Riders wait there and no driver is free. */
export function shortage(cell) {
  return (cell.waiting || 0) > 0 && (cell.available || 0) === 0;
}

/** The H3 resolution for a zoom level: cells a few dozen pixels across. */
export function resolutionFor(zoom) {
  if (zoom < 12) return 7;
  if (zoom < 14) return 8;
  return 9;
}

/**
 * The hexagons of `cells` in world coordinates (0..1, like fleet.js), flat: corners of cell i are
 * xy[2 * starts[i] ...] up to starts[i + 1]. `boundaryOf(cell)` gives a cell's corners as [[lat, lon], ...].
 */
export function hexagons(cells, boundaryOf) {
  const n = cells.length;
  const starts = new Uint32Array(n + 1);
  const cls = new Uint8Array(n);
  const short = new Uint8Array(n);
  let xy = new Float64Array(n * 14);
  let at = 0;
  for (let i = 0; i < n; i += 1) {
    const cell = cells[i];
    const corners = boundaryOf(cell) || [];
    if (2 * (at + corners.length) > xy.length) {
      const bigger = new Float64Array(Math.max(xy.length * 2, 2 * (at + corners.length)));
      bigger.set(xy);
      xy = bigger;
    }
    starts[i] = at;
    for (const [lat, lon] of corners) {
      xy[2 * at] = worldX(lon);
      xy[2 * at + 1] = worldY(lat);
      at += 1;
    }
    cls[i] = densityClass(cell.available, cell.waiting);
    short[i] = shortage(cell) ? 1 : 0;
  }
  starts[n] = at;
  return { count: n, xy, starts, cls, short };
}

/** Corners sent by the server (boundary=1). */
export const serverBoundary = (cell) => cell.boundary;

/** Corners computed with h3-js (`h3` its module), each cell's once: a cell's corners never change. */
export function h3Boundary(h3, cache = new Map()) {
  return (cell) => {
    let corners = cache.get(cell.cell);
    if (!corners) {
      try {
        corners = h3.cellToBoundary(cell.cell);
      } catch {
        return cell.boundary || null; // not a cell h3-js knows: nothing drawn for it
      }
      if (cache.size >= MAX_CACHED_CELLS) cache.clear();
      cache.set(cell.cell, corners);
    }
    return corners;
  };
}

function colours() {
  const css = getComputedStyle(document.documentElement);
  const read = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    classes: Array.from({ length: CLASSES }, (_, i) => read(`--density-${i}`, "#888888")),
    alpha: Number(read("--density-alpha", "0.55")) || 0.55,
    shortage: read("--shortage", "#67001f"),
  };
}

export const DensityLayer = L.Layer.extend({
  initialize() {
    this.hexagons = null;
    this.drawn = 0;
    this.drawnShortage = 0;
    this.lastDrawMs = 0;
    this._colours = colours();
  },

  onAdd(map) {
    const pane = map.getPane("density") || map.createPane("density");
    pane.style.zIndex = 350; // over the tiles (200), under the zones (400) and the fleet (450)
    pane.style.pointerEvents = "none";
    this._canvas = L.DomUtil.create("canvas", "density-canvas leaflet-zoom-animated", pane);
    this._ctx = this._canvas.getContext("2d");
    this._pattern = null;
    this._redraw();
  },

  onRemove() {
    L.DomUtil.remove(this._canvas);
    this._canvas = null;
    this._ctx = null;
    this._width = undefined; // a canvas added again is sized again
  },

  getEvents() {
    return { zoomanim: this._onAnimZoom, moveend: this._redraw, resize: this._redraw, viewreset: this._redraw };
  },

  setHexagons(hexagons) {
    this.hexagons = hexagons;
    this._draw();
  },

  /** The theme changed: read the colours again. */
  setTheme() {
    this._colours = colours();
    this._pattern = null;
    this._draw();
  },

  _redraw() {
    if (!this._canvas) return;
    const map = this._map;
    const size = map.getSize();
    const ratio = Math.min(window.devicePixelRatio || 1, 2);
    const pad = size.multiplyBy(PADDING).round();
    const topLeft = map.containerPointToLayerPoint(pad.multiplyBy(-1)).round();
    const width = size.x + 2 * pad.x;
    const height = size.y + 2 * pad.y;
    L.DomUtil.setTransform(this._canvas, topLeft, 1);
    const origin = map.getPixelOrigin();
    this._zoom = map.getZoom();
    this._center = map.getCenter();
    this._scale = map.options.crs.scale(this._zoom);
    this._left = origin.x + topLeft.x;
    this._top = origin.y + topLeft.y;
    if (this._width !== width || this._height !== height || this._ratio !== ratio) {
      this._width = width;
      this._height = height;
      this._ratio = ratio;
      this._canvas.width = Math.round(width * ratio);
      this._canvas.height = Math.round(height * ratio);
      this._canvas.style.width = `${width}px`;
      this._canvas.style.height = `${height}px`;
      this._pattern = null;
    }
    this._draw();
  },

  // One path per colour class, then the cells short of drivers again, hatched and outlined.
  _draw() {
    const ctx = this._ctx;
    if (!ctx || !this._canvas || this._width === undefined) return;
    const started = performance.now();
    const r = this._ratio;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this._canvas.width, this._canvas.height);
    const h = this.hexagons;
    this.drawn = 0;
    this.drawnShortage = 0;
    if (!h || !h.count) return;
    const scale = this._scale * r;
    const left = this._left * r;
    const top = this._top * r;
    const maxX = this._canvas.width;
    const maxY = this._canvas.height;
    const { classes, alpha, shortage: outline } = this._colours;
    const visible = new Uint8Array(h.count);
    for (let i = 0; i < h.count; i += 1) {
      const s = h.starts[i];
      if (h.starts[i + 1] === s) continue;
      const x = h.xy[2 * s] * scale - left;
      const y = h.xy[2 * s + 1] * scale - top;
      const reach = 1e-4 * scale; // 1e-4 of the world is ~4 km at the equator: more than a cell of resolution 7
      if (x > -reach && y > -reach && x < maxX + reach && y < maxY + reach) visible[i] = 1;
    }
    const trace = (i) => {
      const s = h.starts[i];
      const e = h.starts[i + 1];
      ctx.moveTo(h.xy[2 * s] * scale - left, h.xy[2 * s + 1] * scale - top);
      for (let k = s + 1; k < e; k += 1) ctx.lineTo(h.xy[2 * k] * scale - left, h.xy[2 * k + 1] * scale - top);
      ctx.closePath();
    };
    ctx.lineJoin = "round";
    for (let c = 0; c < CLASSES; c += 1) {
      ctx.beginPath();
      let any = false;
      for (let i = 0; i < h.count; i += 1) {
        if (!visible[i] || h.cls[i] !== c) continue;
        trace(i);
        any = true;
        this.drawn += 1;
      }
      if (!any) continue;
      ctx.globalAlpha = alpha;
      ctx.fillStyle = classes[c];
      ctx.fill();
      ctx.globalAlpha = Math.min(1, alpha + 0.3);
      ctx.lineWidth = 1 * r;
      ctx.strokeStyle = classes[c];
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ctx.beginPath();
    for (let i = 0; i < h.count; i += 1) {
      if (!visible[i] || !h.short[i]) continue;
      trace(i);
      this.drawnShortage += 1;
    }
    if (this.drawnShortage) {
      ctx.fillStyle = this._hatch(classes[0], outline);
      ctx.fill();
      ctx.lineWidth = 2.5 * r;
      ctx.strokeStyle = outline;
      ctx.stroke();
    }
    this.lastDrawMs = performance.now() - started;
  },

  _hatch(fill, line) {
    if (this._pattern) return this._pattern;
    const side = Math.round(8 * this._ratio);
    const tile = document.createElement("canvas");
    tile.width = side;
    tile.height = side;
    const t = tile.getContext("2d");
    t.fillStyle = fill;
    t.fillRect(0, 0, side, side);
    t.strokeStyle = line;
    t.lineWidth = 1.5 * this._ratio;
    t.beginPath();
    t.moveTo(0, side);
    t.lineTo(side, 0);
    t.moveTo(-side / 2, side / 2);
    t.lineTo(side / 2, -side / 2);
    t.moveTo(side / 2, side * 1.5);
    t.lineTo(side * 1.5, side / 2);
    t.stroke();
    this._pattern = this._ctx.createPattern(tile, "repeat");
    return this._pattern;
  },

  // During a zoom animation the canvas keeps its frame and is scaled like the tiles (as layer.js does).
  _onAnimZoom(ev) {
    const map = this._map;
    const scale = map.getZoomScale(ev.zoom, this._zoom);
    const size = map.getSize();
    const pad = size.multiplyBy(PADDING).round();
    const offset = size
      .multiplyBy(0.5)
      .add(pad)
      .multiplyBy(-scale)
      .add(map.project(this._center, ev.zoom))
      .subtract(map._getNewPixelOrigin(ev.center, ev.zoom));
    L.DomUtil.setTransform(this._canvas, offset, scale);
  },
});

/** The panel's switch, its legend and note, and the once-a-second refresh while the layer is on. */
export class Density {
  constructor(map) {
    this.map = map;
    this.layer = new DensityLayer();
    this.toggle = byId("density-toggle");
    this.legend = byId("density-legend");
    this.note = byId("density-note");
    this.on = false;
    this.timer = 0;
    this.controller = null;
    this.requests = 0;
    this.round = 0;
    this.cells = 0;
    this.corners = null; // h3Boundary once h3-js is loaded; until then (or if it cannot load) the server's
    this.cornersFrom = "server";
    this.replaying = false; // the hexagons are always the present: the note says so while the map replays
    this.toggle.checked = false;
    this.toggle.addEventListener("change", () => this.setOn(this.toggle.checked));
  }

  setOn(on) {
    if (on === this.on) return;
    this.on = on;
    this.round += 1; // a refresh loop of an earlier turn-on stops at its next step
    this.toggle.checked = on;
    this.legend.hidden = !on;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    if (on) {
      this.layer.addTo(this.map);
      setText(this.note, "Asking the dashboard…");
      const round = this.round;
      this._loadCorners().then(() => this._tick(round));
    } else {
      this.layer.remove();
      this.layer.setHexagons(null);
      setText(this.note, "");
    }
  }

  setTheme() {
    this.layer.setTheme();
  }

  /** The map replays the past (or is live again): the hexagons stay live, and the note says so. */
  setReplaying(replaying) {
    this.replaying = replaying;
  }

  async _loadCorners() {
    if (this.corners) return;
    try {
      this.corners = h3Boundary(await loadH3());
      this.cornersFrom = "h3-js";
    } catch {
      this.cornersFrom = "server"; // boundary=1: the server sends them
    }
  }

  async _tick(round) {
    if (!this.on || round !== this.round) return;
    const started = performance.now();
    const resolution = resolutionFor(this.map.getZoom());
    this.controller = new AbortController();
    try {
      const boundary = this.corners ? "" : "&boundary=1";
      // Only the cells of the view (and a margin for a small pan): a city at resolution 9 is ten times more.
      const bbox = this.map.getBounds().pad(0.25).toBBoxString();
      const response = await fetch(`api/density?resolution=${resolution}${boundary}&bbox=${bbox}`, {
        cache: "no-store",
        signal: this.controller.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = await response.json();
      if (!this.on || round !== this.round) return;
      this.requests += 1;
      const cells = Array.isArray(body.cells) ? body.cells : [];
      this.cells = cells.length;
      this.layer.setHexagons(hexagons(cells, this.corners || serverBoundary));
      this._say(body, cells);
    } catch (error) {
      if (error.name === "AbortError" || !this.on || round !== this.round) return;
      setText(this.note, `Density unavailable (${error.message}); trying again.`);
    }
    if (this.on && round === this.round) {
      this.timer = setTimeout(() => this._tick(round), Math.max(0, REFRESH_MS - (performance.now() - started)));
    }
  }

  _say(body, cells) {
    const short = cells.reduce((n, cell) => n + (shortage(cell) ? 1 : 0), 0);
    let text = `${number.format(cells.length)} cells at H3 resolution ${body.resolution ?? "?"}`;
    text += short ? `; ${number.format(short)} with riders waiting and no driver free.` : ".";
    if (body.truncated) text += " Only the busiest cells are drawn (the answer was truncated).";
    if (this.replaying) text = `Live, not replayed: ${text}`;
    setText(this.note, text);
  }

  /** For tests and the bench: what was drawn last. */
  debug() {
    return {
      on: this.on,
      cells: this.cells,
      drawn: this.layer.drawn,
      shortage: this.layer.drawnShortage,
      requests: this.requests,
      cornersFrom: this.cornersFrom,
      drawMs: this.layer.lastDrawMs,
    };
  }
}
