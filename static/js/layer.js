// The fleet on one canvas: every driver stamped straight into an ImageData buffer, then one
// putImageData per frame. In headless Chromium without a GPU this draws 10,000 drivers in a few
// milliseconds, where 10,000 canvas arcs take hundreds and 10,000 drawImage calls tens.
//
// The canvas lives in a map pane, so Leaflet carries it along while the map is dragged and scales
// it during a zoom animation (as its own vector renderer does); between those, every frame the
// canvas is put back over the map's viewport and redrawn in the frame of reference of that moment.

import { PALETTES, SHAPES } from "./palette.js";
import { STATUS, STATUS_NAMES, UNKNOWN_U16 } from "./protocol.js";
// Drawn last = on top: stale drivers under live ones, and drivers on a trip above the rest.
const DRAW_ORDER = [STATUS.offline, STATUS.unknown, STATUS.available, STATUS.on_trip];
// Drawing groups 0-3 are stale drivers in DRAW_ORDER, 4-7 live ones: group = (stale ? 0 : 4) + rank.
const GROUPS = 8;
const HIDDEN = 255;
const GROUP_STATUS = Uint8Array.from(DRAW_ORDER);
const GROUP_RANK = new Uint8Array(256).fill(DRAW_ORDER.indexOf(STATUS.unknown)); // an unknown byte draws as unknown
for (const [rank, status] of DRAW_ORDER.entries()) GROUP_RANK[status] = rank;
const STALE_ALPHA = 0.32;
const HEADINGS = 36; // wedge directions, 10 degrees apart; index 36 = no heading
// Smaller dots where drivers crowd (zoomed out, or a big fleet): sizes by the typical distance in
// pixels between neighbours on screen.
const SIZES = [1, 0.78, 0.58];
const CROWDED_SPACING_PX = [24, 10];
const HIT_RADIUS_PX = 10;

export const FleetLayer = L.Layer.extend({
  initialize(fleet, palette = PALETTES.light) {
    this._fleet = fleet;
    this._palette = palette;
    this._here = new Float64Array(2);
    this._sx = new Float32Array(0);
    this._sy = new Float32Array(0);
    this._group = new Uint8Array(0); // slot -> drawing group, HIDDEN when off screen
    this._order = new Uint32Array(0); // visible slots by group
    this._groupStart = new Int32Array(GROUPS);
    this._dirty = [0, 0, -1, -1]; // x0, y0, x1, y1 stamped by the last frame (device pixels)
    this._fullPut = true;
    this._projected = 0; // slots projected by the last frame
    this.drawn = 0;
    this.highlight = -1; // slot drawn with a ring (the selected driver)
    this._overlays = []; // painters drawn over the drivers (see addOverlay)
    this._overlaid = false;
  },

  /** Draw `painter` over the drivers on this canvas: { busy, paint(ctx, view, now) -> things drawn }. */
  addOverlay(painter) {
    this._overlays.push(painter);
  },

  onAdd(map) {
    const pane = map.getPane("fleet") || map.createPane("fleet");
    pane.style.zIndex = 450; // over tiles and vectors (400), under markers, tooltips and popups
    pane.style.pointerEvents = "none";
    this._canvas = L.DomUtil.create("canvas", "fleet-canvas leaflet-zoom-animated", pane);
    this._ctx = this._canvas.getContext("2d");
    this._reframe();
    this._needsReframe = true;
  },

  onRemove() {
    L.DomUtil.remove(this._canvas);
    this._canvas = null;
  },

  getEvents() {
    // The same functions every call, so that removing the layer unbinds them.
    return {
      zoomanim: this._onAnimZoom,
      zoom: this._markMoved,
      move: this._markMoved,
      resize: this._markMoved,
      viewreset: this._markMoved,
      zoomend: this._markMoved,
    };
  },

  _markMoved() {
    this._needsReframe = true;
  },

  /** Whether the map moved since the last frame, so that the next one must be drawn whatever happens. */
  get moved() {
    return this._needsReframe;
  },

  /** Draw with another theme's colours from the next frame on. */
  setPalette(palette) {
    this._palette = palette;
    this._stampSets = [];
    this._needsReframe = true;
  },

  /** Draw the fleet as it is at `now` (performance.now() ms). */
  draw(now) {
    const map = this._map;
    if (!map || !this._canvas) return;
    if (this._needsReframe && !map._animatingZoom) this._reframe();
    const fleet = this._fleet;
    const n = fleet.count;
    const overlays = this._overlaid || this._overlays.some((o) => o.busy);
    if (n === 0 && this.drawn === 0 && this._cleared && !overlays) return; // nothing on the map, nothing to redo
    this._cleared = n === 0;
    this._project(now, n);
    const width = this._width;
    const height = this._height;
    const pixels = this._pixels;
    const sets = this._stamps(this._sizeFor(this._spacing));
    // Clear only the rows the last frame stamped (the rest of the buffer is still transparent).
    if (this._dirty[1] <= this._dirty[3]) pixels.fill(0, this._dirty[1] * width, (this._dirty[3] + 1) * width);
    // Slots by group (stale first, faded, then live ones by status): a counting sort, no comparisons.
    const groups = this._group;
    const order = this._order;
    const start = this._groupStart;
    let at = 0;
    for (let g = 0; g < GROUPS; g += 1) {
      const c = start[g];
      start[g] = at;
      at += c;
    }
    for (let s = 0; s < n; s += 1) {
      const g = groups[s];
      if (g !== HIDDEN) order[start[g]++] = s;
    }
    const ratio = this._ratio;
    const sx = this._sx;
    const sy = this._sy;
    const heading = fleet.heading;
    let minX = width;
    let minY = height;
    let maxX = -1;
    let maxY = -1;
    let k = 0;
    for (let g = 0; g < GROUPS; g += 1) {
      const set = sets[g < 4 ? 1 : 0][GROUP_STATUS[g & 3]];
      for (const end = start[g]; k < end; k += 1) {
        const s = order[k];
        const raw = heading[s];
        const stamp = set[raw === UNKNOWN_U16 ? HEADINGS : Math.round(raw / 100) % HEADINGS];
        const x = Math.round(sx[s] * ratio);
        const y = Math.round(sy[s] * ratio);
        stampInto(pixels, width, height, stamp, x, y);
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      }
    }
    const drawn = k;
    // Put back only the rectangle stamped now or last frame; all of it when painters drew last frame.
    const reach = this._reach;
    const now4 = [
      Math.max(0, minX - reach),
      Math.max(0, minY - reach),
      Math.min(width - 1, maxX + reach),
      Math.min(height - 1, maxY + reach),
    ];
    const last = this._fullPut ? [0, 0, width - 1, height - 1] : this._dirty;
    const x0 = Math.min(now4[0], last[0]);
    const y0 = Math.min(now4[1], last[1]);
    const x1 = Math.max(now4[2], last[2]);
    const y1 = Math.max(now4[3], last[3]);
    if (x0 <= x1 && y0 <= y1) this._ctx.putImageData(this._image, 0, 0, x0, y0, x1 - x0 + 1, y1 - y0 + 1);
    this._dirty = now4;
    const ringed = this._ring();
    this.drawn = drawn;
    if (overlays) this._overlaid = this._paintOverlays(now) > 0;
    this._fullPut = ringed || this._overlaid || overlays;
  },

  // The frame of reference painters draw in: CSS pixels = world * scale - (left, top), times ratio on the canvas.
  _paintOverlays(now) {
    const view = {
      scale: this._worldScale,
      left: this._originX,
      top: this._originY,
      ratio: this._ratio,
      width: this._cssWidth,
      height: this._cssHeight,
    };
    let painted = 0;
    for (const overlay of this._overlays) painted += overlay.paint(this._ctx, view, now);
    return painted;
  },

  /** The slot drawn nearest to a container point, or -1 if none is within reach. */
  slotAt(point) {
    let best = -1;
    let bestDistance = HIT_RADIUS_PX * HIT_RADIUS_PX;
    const fleet = this._fleet;
    for (let s = 0; s < fleet.count; s += 1) {
      if (!this._shown(s)) continue;
      const dx = this._sx[s] - point.x;
      const dy = this._sy[s] - point.y;
      const d = dx * dx + dy * dy;
      if (d <= bestDistance) {
        bestDistance = d;
        best = s;
      }
    }
    return best;
  },

  /** Where slot `s` was drawn last, in container pixels, or null when it was off screen. */
  drawnAt(s) {
    if (s < 0 || s >= this._fleet.count || !this._shown(s)) return null;
    return [this._sx[s], this._sy[s]];
  },

  // Whether slot `s` was on screen at the last projection.
  _shown(s) {
    return s < this._projected && this._group[s] !== HIDDEN;
  },

  _sizeFor(spacing) {
    let size = 0;
    while (size < CROWDED_SPACING_PX.length && spacing < CROWDED_SPACING_PX[size]) size += 1;
    return size;
  },

  // The stamps of one size, built the first time that size is drawn.
  _stamps(size) {
    if (!this._stampSets[size]) {
      this._stampSets[size] = buildStampSet(this._palette, this._ratio, SIZES[size]);
      setWidth(this._stampSets[size], this._width);
    }
    return this._stampSets[size];
  },

  // Screen positions (CSS pixels from the canvas's corner) of every driver at `now`, which are on
  // screen and in which drawing group, and how far apart the visible ones typically are.
  _project(now, n) {
    if (this._sx.length < n) {
      const size = Math.max(n, this._sx.length * 2);
      this._sx = new Float32Array(size);
      this._sy = new Float32Array(size);
      this._group = new Uint8Array(size);
      this._order = new Uint32Array(size);
    }
    const fleet = this._fleet;
    const sx = this._sx;
    const sy = this._sy;
    const groups = this._group;
    const counts = this._groupStart;
    counts.fill(0);
    this._projected = n;
    fleet.positionsAt(now, this._worldScale, this._originX, this._originY, sx, sy);
    const status = fleet.status;
    const stale = fleet.stale;
    const margin = 12;
    const right = this._cssWidth + margin;
    const bottom = this._cssHeight + margin;
    let visible = 0;
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    for (let s = 0; s < n; s += 1) {
      const x = sx[s];
      const y = sy[s];
      if (x > -margin && y > -margin && x < right && y < bottom) {
        const g = (stale[s] ? 0 : 4) + GROUP_RANK[status[s]];
        groups[s] = g;
        counts[g] += 1;
        visible += 1;
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      } else {
        groups[s] = HIDDEN;
      }
    }
    const area = visible ? (maxX - minX + 2 * margin) * (maxY - minY + 2 * margin) : 0;
    this._spacing = visible > 1 ? Math.sqrt(area / visible) : Infinity;
  },

  // Put the canvas over the viewport again and take the map's current frame of reference.
  _reframe() {
    const map = this._map;
    const size = map.getSize();
    const ratio = Math.min(window.devicePixelRatio || 1, 2);
    const topLeft = map.containerPointToLayerPoint([0, 0]).round();
    L.DomUtil.setPosition(this._canvas, topLeft);
    const origin = map.getPixelOrigin();
    this._frameZoom = map.getZoom();
    this._frameCenter = map.getCenter();
    this._worldScale = map.options.crs.scale(this._frameZoom);
    this._originX = origin.x + topLeft.x;
    this._originY = origin.y + topLeft.y;
    if (size.x !== this._cssWidth || size.y !== this._cssHeight || ratio !== this._ratio) {
      this._resize(size.x, size.y, ratio);
    }
    this._needsReframe = false;
    this._cleared = false;
  },

  _resize(cssWidth, cssHeight, ratio) {
    this._cssWidth = cssWidth;
    this._cssHeight = cssHeight;
    this._ratio = ratio;
    this._width = Math.max(1, Math.round(cssWidth * ratio));
    this._height = Math.max(1, Math.round(cssHeight * ratio));
    this._canvas.width = this._width;
    this._canvas.height = this._height;
    this._canvas.style.width = `${cssWidth}px`;
    this._canvas.style.height = `${cssHeight}px`;
    this._image = this._ctx.createImageData(this._width, this._height);
    this._reach = Math.ceil(15 * ratio); // beyond a marker's centre: the largest stamp, the selection ring
    this._dirty = [0, 0, -1, -1]; // a resized canvas and a new buffer are blank
    this._fullPut = true;
    this._pixels = new Uint32Array(this._image.data.buffer);
    if (this._stampRatio !== ratio) {
      this._stampSets = [];
      this._stampRatio = ratio;
    }
    for (const sets of this._stampSets) if (sets) setWidth(sets, this._width);
  },

  // During a zoom animation the canvas keeps the old frame and is scaled like the tiles
  // (the transform Leaflet's own renderers use).
  _onAnimZoom(ev) {
    const map = this._map;
    const scale = map.getZoomScale(ev.zoom, this._frameZoom);
    const offset = map
      .getSize()
      .multiplyBy(0.5)
      .multiplyBy(-scale)
      .add(map.project(this._frameCenter, ev.zoom))
      .subtract(map._getNewPixelOrigin(ev.center, ev.zoom));
    L.DomUtil.setTransform(this._canvas, offset, scale);
  },

  // A ring around the selected driver, drawn with the canvas API over the stamped pixels; whether it was.
  _ring() {
    const s = this.highlight;
    if (s < 0 || s >= this._fleet.count || !this._shown(s)) return false;
    const ctx = this._ctx;
    const r = this._ratio;
    ctx.beginPath();
    ctx.arc(this._sx[s] * r, this._sy[s] * r, 11 * r, 0, 2 * Math.PI);
    ctx.lineWidth = 2.5 * r;
    ctx.strokeStyle = this._palette.ring;
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(this._sx[s] * r, this._sy[s] * r, 13.5 * r, 0, 2 * Math.PI);
    ctx.lineWidth = 2 * r;
    ctx.strokeStyle = this._palette.ringHalo;
    ctx.stroke();
    return true;
  },
});

// A stamp is the non-transparent pixels of one driver picture: their offsets from the picture's
// centre (as row * width + column in the canvas buffer, and as dx, dy for clipping at the edges)
// and their RGBA values in the buffer's own byte order. The picture is the status's shape in its
// colour (a disc, a square, a ring or a diamond: palette.js's SHAPES), with a wedge for the heading.
function buildStamp(palette, status, headingDegrees, ratio, size, alpha) {
  const color = palette[status];
  const shape = SHAPES[status];
  const radius = 4.6 * size * ratio;
  const tip = 9 * size * ratio;
  const half = Math.ceil(tip + ratio);
  const side = 2 * half + 1;
  const canvas = document.createElement("canvas");
  canvas.width = side;
  canvas.height = side;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const c = half + 0.5;
  if (headingDegrees !== null) {
    const a = (headingDegrees * Math.PI) / 180;
    const spread = 0.62;
    ctx.beginPath();
    ctx.moveTo(c + Math.sin(a) * tip, c - Math.cos(a) * tip);
    ctx.lineTo(c + Math.sin(a + spread) * radius * 0.92, c - Math.cos(a + spread) * radius * 0.92);
    ctx.lineTo(c + Math.sin(a - spread) * radius * 0.92, c - Math.cos(a - spread) * radius * 0.92);
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.fill();
  }
  shapePath(ctx, shape, c, radius);
  ctx.fillStyle = color;
  ctx.fill();
  ctx.lineWidth = 1.3 * ratio;
  ctx.strokeStyle = palette.outline;
  ctx.stroke();
  if (shape === "ring") {
    ctx.beginPath();
    ctx.arc(c, c, radius * 0.5, 0, 2 * Math.PI);
    ctx.fillStyle = palette.hollow;
    ctx.fill();
  }
  const rgba = ctx.getImageData(0, 0, side, side).data;
  const dx = [];
  const dy = [];
  const values = [];
  const bytes = new Uint8Array(4);
  const word = new Uint32Array(bytes.buffer);
  for (let p = 0; p < side * side; p += 1) {
    const a = rgba[p * 4 + 3];
    if (a < 8) continue;
    bytes[0] = rgba[p * 4];
    bytes[1] = rgba[p * 4 + 1];
    bytes[2] = rgba[p * 4 + 2];
    bytes[3] = Math.round(a * alpha);
    dx.push((p % side) - half);
    dy.push(Math.floor(p / side) - half);
    values.push(word[0]);
  }
  return {
    half,
    offsets: new Int32Array(dx.length),
    dx: Int32Array.from(dx),
    dy: Int32Array.from(dy),
    values: Uint32Array.from(values),
  };
}

// Where each pixel of each stamp lands in a buffer `width` pixels wide, relative to its centre.
function setWidth(sets, width) {
  for (const byStatus of sets) {
    for (const stamps of byStatus) {
      for (const stamp of stamps) {
        for (let k = 0; k < stamp.offsets.length; k += 1) stamp.offsets[k] = stamp.dy[k] * width + stamp.dx[k];
      }
    }
  }
}

// The outline of a marker's shape, about as large as a disc of `radius` around (c, c).
function shapePath(ctx, shape, c, radius) {
  ctx.beginPath();
  if (shape === "square") {
    const half = radius * 0.9;
    ctx.rect(c - half, c - half, 2 * half, 2 * half);
  } else if (shape === "diamond") {
    const half = radius * 1.25;
    ctx.moveTo(c, c - half);
    ctx.lineTo(c + half, c);
    ctx.lineTo(c, c + half);
    ctx.lineTo(c - half, c);
    ctx.closePath();
  } else {
    ctx.arc(c, c, radius, 0, 2 * Math.PI);
  }
}

// sets[stale][status][heading index] for one palette, pixel ratio and size.
function buildStampSet(palette, ratio, size) {
  const sets = [];
  for (const stale of [0, 1]) {
    const byStatus = [];
    for (const status of [STATUS.unknown, STATUS.available, STATUS.on_trip, STATUS.offline]) {
      const stamps = [];
      for (let h = 0; h <= HEADINGS; h += 1) {
        const heading = h === HEADINGS ? null : (h * 360) / HEADINGS;
        stamps.push(buildStamp(palette, STATUS_NAMES[status], heading, ratio, size, stale ? STALE_ALPHA : 1));
      }
      byStatus[status] = stamps;
    }
    sets[stale] = byStatus;
  }
  return sets;
}

function stampInto(pixels, width, height, stamp, x, y) {
  const half = stamp.half;
  const values = stamp.values;
  if (x >= half && y >= half && x < width - half && y < height - half) {
    const base = y * width + x;
    const offsets = stamp.offsets;
    for (let k = 0; k < offsets.length; k += 1) pixels[base + offsets[k]] = values[k];
    return;
  }
  // Near an edge: clip pixel by pixel (rare).
  for (let k = 0; k < values.length; k += 1) {
    const px = x + stamp.dx[k];
    const py = y + stamp.dy[k];
    if (px >= 0 && py >= 0 && px < width && py < height) pixels[py * width + px] = values[k];
  }
}
