// Riders on the map. Each `riders` event (docs/api.md) holds every ride the map shows, so the page
// simply replaces its copy. The fleet layer calls RiderPainter.paint after drawing the drivers, on
// the same canvas and in the same frame of reference: a line from each matched driver's current
// (animated) position to its rider until pick-up, then a pin per waiting or matched rider on top.

import { worldX, worldY } from "./fleet.js";
import { PALETTES } from "./palette.js";
const SHOWN_STATES = new Set(["waiting", "en_route"]);
const HIT_RADIUS_PX = 12;
const LINE_GAP_PX = 7;
// The pin, in CSS pixels: a round head whose tip stands on the pick-up point.
const PIN_RADIUS = 7.5;
const PIN_HEIGHT = 22;

/** The browser's copy of the riders: the latest event, with world coordinates for drawing. */
export class Riders {
  constructor() {
    this.list = [];
    this.byId = new Map();
    this.counts = null;
  }

  replace(payload) {
    this.list = (payload.riders || []).map((r) => ({ ...r, x: worldX(r.lon), y: worldY(r.lat) }));
    this.byId = new Map(this.list.map((r) => [r.id, r]));
    this.counts = payload.counts || null;
  }

  get(requestId) {
    return this.byId.get(requestId);
  }
}

export class RiderPainter {
  constructor(riders, fleet, palette = PALETTES.light) {
    this._riders = riders;
    this._fleet = fleet;
    this._palette = palette;
    this._here = new Float64Array(2);
    this._sprites = null;
    this._spriteRatio = 0;
    this._drawnAt = new Map(); // request id -> [x, y] container pixels, of the last frame
    this.highlight = null; // request id drawn with a ring (the selected rider)
    this.drawn = 0;
    this.lines = 0;
  }

  /** Paint with another theme's colours from the next frame on. */
  setPalette(palette) {
    this._palette = palette;
    this._spriteRatio = 0;
  }

  /** Whether the next frame has anything to paint. */
  get busy() {
    return this._riders.list.length > 0;
  }

  /** Paint lines and pins; `view` is the layer's frame of reference (see FleetLayer.draw). */
  paint(ctx, view, now) {
    this._drawnAt.clear();
    const shown = this._riders.list.filter((r) => SHOWN_STATES.has(r.state));
    this.lines = this._paintLines(ctx, view, now, shown);
    const sprites = this._spritesFor(view.ratio);
    const margin = PIN_HEIGHT;
    let drawn = 0;
    for (const rider of shown) {
      const x = rider.x * view.scale - view.left;
      const y = rider.y * view.scale - view.top;
      if (x < -margin || y < -margin || x > view.width + margin || y > view.height + margin) continue;
      const sprite = sprites[rider.state];
      ctx.drawImage(sprite.canvas, Math.round(x * view.ratio - sprite.anchorX), Math.round(y * view.ratio - sprite.anchorY));
      this._drawnAt.set(rider.id, [x, y]);
      drawn += 1;
    }
    this._ring(ctx, view.ratio);
    this.drawn = drawn;
    return drawn + this.lines;
  }

  /** The rider whose pin head is nearest a container point (the head is what the eye aims at), or null. */
  riderAt(point) {
    let best = null;
    let bestDistance = HIT_RADIUS_PX;
    for (const [id, [x, y]] of this._drawnAt) {
      const distance = Math.hypot(x - point.x, y - PIN_HEIGHT * 0.6 - point.y);
      if (distance <= bestDistance) [best, bestDistance] = [id, distance];
    }
    return best;
  }

  /** Where every rider's pick-up point was drawn last (container pixels). */
  drawnPoints() {
    return Array.from(this._drawnAt.values());
  }

  /** Where a rider's pick-up point was drawn last (container pixels), or null. */
  drawnAt(requestId) {
    return this._drawnAt.get(requestId) || null;
  }

  // One path for every line: a white halo, then the dashed line, two strokes in all.
  _paintLines(ctx, view, now, shown) {
    const fleet = this._fleet;
    const here = this._here;
    const r = view.ratio;
    ctx.beginPath();
    let lines = 0;
    for (const rider of shown) {
      if (rider.state !== "en_route" || rider.driver_id === null) continue;
      const slot = fleet.slotOf(rider.driver_id);
      if (slot === undefined) continue;
      fleet.positionAt(slot, now, here);
      const x0 = here[0] * view.scale - view.left;
      const y0 = here[1] * view.scale - view.top;
      const x1 = rider.x * view.scale - view.left;
      const y1 = rider.y * view.scale - view.top;
      const length = Math.hypot(x1 - x0, y1 - y0);
      if (length <= LINE_GAP_PX) continue; // the driver is there: no line to draw
      // Start at the edge of the driver's dot, so that the line does not cover it.
      const k = LINE_GAP_PX / length;
      ctx.moveTo((x0 + (x1 - x0) * k) * r, (y0 + (y1 - y0) * k) * r);
      ctx.lineTo(x1 * r, y1 * r);
      lines += 1;
    }
    if (lines) {
      ctx.lineCap = "round";
      ctx.setLineDash([]);
      ctx.lineWidth = 4.5 * r;
      ctx.strokeStyle = this._palette.lineHalo;
      ctx.stroke();
      ctx.setLineDash([6 * r, 4 * r]);
      ctx.lineWidth = 2 * r;
      ctx.strokeStyle = this._palette.line;
      ctx.stroke();
      ctx.setLineDash([]);
    }
    return lines;
  }

  _ring(ctx, ratio) {
    const at = this.highlight === null ? null : this._drawnAt.get(this.highlight);
    if (!at) return;
    ctx.beginPath();
    ctx.arc(at[0] * ratio, (at[1] - PIN_HEIGHT + PIN_RADIUS) * ratio, (PIN_RADIUS + 4) * ratio, 0, 2 * Math.PI);
    ctx.lineWidth = 2.5 * ratio;
    ctx.strokeStyle = this._palette.ring;
    ctx.stroke();
  }

  _spritesFor(ratio) {
    if (this._spriteRatio !== ratio) {
      const palette = this._palette;
      this._sprites = { waiting: pinSprite(palette.waiting, palette.outline, ratio), en_route: pinSprite(palette.en_route, palette.outline, ratio) };
      this._spriteRatio = ratio;
    }
    return this._sprites;
  }
}

// A map pin with a person's head in it, drawn once per colour and pixel ratio.
function pinSprite(color, outline, ratio) {
  const r = PIN_RADIUS * ratio;
  const height = PIN_HEIGHT * ratio;
  const pad = 2 * ratio;
  const canvas = document.createElement("canvas");
  canvas.width = Math.ceil(2 * (r + pad));
  canvas.height = Math.ceil(height + 2 * pad);
  const ctx = canvas.getContext("2d");
  const cx = canvas.width / 2;
  const cy = pad + r;
  const tipY = pad + height;
  const spread = 0.78; // where the sides leave the head, in radians from straight down
  ctx.beginPath();
  ctx.arc(cx, cy, r, Math.PI / 2 + spread, Math.PI / 2 - spread);
  ctx.lineTo(cx, tipY);
  ctx.closePath();
  ctx.fillStyle = color;
  ctx.fill();
  ctx.lineWidth = 1.5 * ratio;
  ctx.strokeStyle = outline;
  ctx.stroke();
  ctx.fillStyle = "#fff";
  ctx.beginPath();
  ctx.arc(cx, cy - r * 0.22, r * 0.3, 0, 2 * Math.PI); // head
  ctx.fill();
  ctx.beginPath();
  ctx.ellipse(cx, cy + r * 0.42, r * 0.5, r * 0.28, 0, Math.PI, 2 * Math.PI); // shoulders
  ctx.fill();
  return { canvas, anchorX: cx, anchorY: tipY };
}
