// The selected driver's track, in its details card: 15 min, 1 h or a custom window, asked from
// GET api/drivers/<id>/track (the dashboard reads it back from Kafka), drawn on the map as a line coloured by
// speed with a time label every few minutes and a dot at each stop, and as a small speed-over-time chart in the
// card. A click on the line says when the driver was there. The chart follows the time bar: while replaying, a
// cursor marks the replayed time on it and a ring on the line shows where the driver was then; a click on the
// chart replays the fleet from that moment. Text from Kafka (the id, the server's error sentences) goes into the
// page as text only; the labels are ours.

// Speed classes (km/h, below) and colours: dashboard/export.py's SPEED_CLASSES and track.css's --speed-N.
const SPEED_CLASSES = [
  { below: 5, colour: "#7c3aed" },
  { below: 20, colour: "#2563eb" },
  { below: 40, colour: "#0d9488" },
  { below: 60, colour: "#ca8a04" },
  { below: Infinity, colour: "#dc2626" },
];
const STOP_COLOUR = "#f59e0b";
const CURSOR_COLOUR = "#e11d48";
// The chart's drawing area inside the canvas (CSS pixels): its x axis is time, from the first fix to the last.
const CHART_PAD_X = 4;
// A time label every step, the first step that gives at most MAX_TICKS of them (as the exported file does).
const TICK_STEPS_S = [300, 600, 900, 1800, 3600, 7200, 10800];
const MAX_TICKS = 24;
// A click this close to a point of the line (CSS pixels) asks for its time.
const PICK_PX = 12;
const LINE_STYLE = { weight: 5, opacity: 0.9, interactive: false, lineJoin: "round", lineCap: "round" };

const byId = (id) => document.getElementById(id);
const clock = (epochS) => new Date(epochS * 1000).toLocaleTimeString("en-GB");
const shortClock = (epochS) => clock(epochS).slice(0, 5);
const count = (n, one, many = `${one}s`) => `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;

export function speedClass(kmh) {
  return SPEED_CLASSES.findIndex((c) => (kmh || 0) < c.below);
}

/** The line cut where its speed class changes: [{cls, latlngs}], each run starting where the previous ended. */
export function runsBySpeed(points, speeds) {
  const runs = [];
  for (let i = 1; i < points.length; i += 1) {
    const cls = speedClass(speeds[i]);
    const end = [points[i][0], points[i][1]];
    const last = runs[runs.length - 1];
    if (last && last.cls === cls) last.latlngs.push(end);
    else runs.push({ cls, latlngs: [[points[i - 1][0], points[i - 1][1]], end] });
  }
  return runs;
}

export function tickTimes(start, end) {
  const step = TICK_STEPS_S.find((s) => (end - start) / s <= MAX_TICKS) || TICK_STEPS_S[TICK_STEPS_S.length - 1];
  const times = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) times.push(t);
  return times;
}

/** Index of the first point taken at or after `t` (the last one if none). */
function indexAt(points, t) {
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][2] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function localInputValue(epochS) {
  const d = new Date(epochS * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export class DriverTrack {
  /**
   * `nowS()` is the server's clock as the page knows it (the last 15 minutes are the server's); `onDrawn(bounds)`
   * is told where a track was just drawn, so the page can show all of it; `seek(t)` replays the fleet from t.
   */
  constructor(map, nowS, onDrawn = () => {}, seek = () => {}) {
    this.map = map;
    this.nowS = nowS;
    this.onDrawn = onDrawn;
    this.seek = seek;
    this.cursorS = null; // the time bar's replayed time, null when live
    this.layer = L.layerGroup().addTo(map);
    this.cursor = L.circleMarker([0, 0], {
      radius: 8, weight: 3, color: CURSOR_COLOUR, fill: false, interactive: false,
    });
    this.driverId = null;
    this.points = [];
    this.speeds = [];
    this.lines = 0;
    this.asked = 0; // the newest request: an older answer arriving late is dropped
    this.root = byId("track");
    this.choices = [byId("track-15"), byId("track-60")];
    this.customButton = byId("track-custom");
    this.range = byId("track-range");
    this.from = byId("track-from");
    this.to = byId("track-to");
    this.status = byId("track-status");
    this.drawn = byId("track-drawn");
    this.chart = byId("track-chart");
    this.exportLink = byId("track-export");
    for (const button of this.choices) {
      button.addEventListener("click", () => this._last(Number(button.dataset.minutes), button));
    }
    this.customButton.addEventListener("click", () => this._toggleCustom());
    this.range.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this._custom();
    });
    byId("track-clear").addEventListener("click", () => this.clear());
    this.chart.addEventListener("click", (ev) => this._seekFromChart(ev));
  }

  /** The time bar moved: the chart's cursor and the ring on the line at replayed time `t` (null: live, none). */
  follow(t) {
    if (t === this.cursorS) return;
    this.cursorS = t;
    if (this.points.length) this._chart();
    this._placeCursor();
  }

  /** A new driver in the card: nothing drawn, nothing asked yet. */
  forDriver(driverId) {
    this.clear();
    this.driverId = driverId;
    this._showCustom(false);
  }

  clear() {
    this.asked += 1;
    this.layer.clearLayers();
    this.cursor.remove();
    this.map.closePopup();
    this.points = [];
    this.speeds = [];
    this.lines = 0;
    this.drawn.hidden = true;
    this._say("");
    this._press(null);
  }

  _last(minutes, button) {
    const to = this.nowS();
    this._press(button);
    this._showCustom(false);
    this.load(to - minutes * 60, to);
  }

  _toggleCustom() {
    const open = this.range.hidden;
    if (open && !this.from.value) {
      const now = this.nowS();
      this.from.value = localInputValue(now - 3600);
      this.to.value = localInputValue(now);
    }
    this._showCustom(open);
    if (open) this.from.focus();
  }

  _showCustom(open) {
    this.range.hidden = !open;
    this.customButton.setAttribute("aria-expanded", String(open));
  }

  _custom() {
    // datetime-local is the reader's local time; the API takes epoch seconds (it never guesses a zone).
    const from = new Date(this.from.value).getTime() / 1000;
    const to = new Date(this.to.value).getTime() / 1000;
    if (!Number.isFinite(from) || !Number.isFinite(to)) {
      this._say("Give both times.", true);
      return;
    }
    this._press(null);
    this.load(from, to);
  }

  _press(active) {
    for (const button of this.choices) button.setAttribute("aria-pressed", String(button === active));
  }

  async load(fromS, toS) {
    const driverId = this.driverId;
    if (driverId === null) return;
    const asked = (this.asked += 1);
    this._say("Reading the track from Kafka…");
    const query = `from=${fromS.toFixed(3)}&to=${toS.toFixed(3)}`;
    let body;
    try {
      // Same origin: the token's cookie, when there is one, goes with the request.
      const response = await fetch(`api/drivers/${encodeURIComponent(driverId)}/track?${query}`, { cache: "no-store" });
      body = await response.json();
      if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
    } catch (error) {
      if (asked === this.asked) this._say(`No track: ${error.message}`, true);
      return;
    }
    if (asked !== this.asked || driverId !== this.driverId) return;
    this.exportLink.href = `export/map.html?driver=${encodeURIComponent(driverId)}&${query}&inline=1`;
    this.draw(body);
  }

  draw(body) {
    this.layer.clearLayers();
    this.points = body.points;
    this.speeds = body.speeds_kmh;
    const runs = runsBySpeed(this.points, this.speeds);
    for (const { cls, latlngs } of runs) {
      L.polyline(latlngs, { ...LINE_STYLE, color: SPEED_CLASSES[cls].colour }).addTo(this.layer);
    }
    this.lines = runs.length;
    for (const stop of body.stops) {
      L.circleMarker([stop.latitude, stop.longitude], {
        radius: 6, weight: 2, color: "#111827", fillColor: STOP_COLOUR, fillOpacity: 1, interactive: false,
      }).addTo(this.layer);
    }
    this._ticks();
    this._chart();
    this._placeCursor();
    this.drawn.hidden = this.points.length === 0;
    this._say(this._summary(body));
    if (this.points.length) this.onDrawn(L.latLngBounds(this.points.map(([lat, lon]) => [lat, lon])));
  }

  _summary(body) {
    const points = this.points;
    if (!points.length) return `No fixes from ${clock(body.from)} to ${clock(body.to)}.`;
    const times = `${clock(points[0][2])}–${clock(points[points.length - 1][2])}`;
    let text = `${count(points.length, "fix", "fixes")}, ${count(body.stops.length, "stop")}, ${times}.`;
    if (body.truncated) text += " Only the first fixes of the window: ask for a shorter one.";
    const skipped = Object.values((body.read && body.read.skipped) || {}).reduce((a, b) => a + b, 0);
    if (skipped) text += ` ${count(skipped, "refused record")} skipped.`;
    if (body.read && body.read.stopped && body.read.stopped !== "cap") text += " The read stopped early: ask for a shorter window.";
    return text;
  }

  // A small label with the time at the first fix of every step (5 min for up to 2 h).
  _ticks() {
    const points = this.points;
    if (points.length < 2) return;
    for (const t of tickTimes(points[0][2], points[points.length - 1][2])) {
      const [lat, lon] = points[indexAt(points, t)];
      const label = document.createElement("span");
      label.textContent = shortClock(t);
      const icon = L.divIcon({ className: "track-tick", html: label, iconSize: null });
      L.marker([lat, lon], { icon, interactive: false, keyboard: false }).addTo(this.layer);
    }
  }

  // Speed over time: one segment per fix, coloured like the line; the time axis from the first to the last fix.
  _chart() {
    const canvas = this.chart;
    const points = this.points;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 250;
    const height = canvas.clientHeight || 72;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const speeds = this.speeds.filter((s) => s !== null);
    if (points.length < 2 || !speeds.length) {
      canvas.setAttribute("aria-label", "Speed over time: not enough fixes");
      return;
    }
    const fastest = Math.max(...speeds);
    const top = Math.max(10, fastest) * 1.25; // head room for the label above the line
    const [t0, span] = this._span();
    const x = (t) => CHART_PAD_X + ((t - t0) / span) * (width - 2 * CHART_PAD_X);
    const y = (kmh) => height - 14 - (kmh / top) * (height - 22);
    ctx.lineWidth = 1.5;
    for (let i = 1; i < points.length; i += 1) {
      if (this.speeds[i] === null) continue;
      ctx.strokeStyle = SPEED_CLASSES[speedClass(this.speeds[i])].colour;
      ctx.beginPath();
      ctx.moveTo(x(points[i - 1][2]), y(this.speeds[i]));
      ctx.lineTo(x(points[i][2]), y(this.speeds[i]));
      ctx.stroke();
    }
    const ink = getComputedStyle(document.documentElement).getPropertyValue("--ink-2").trim() || "#334155";
    ctx.fillStyle = ink;
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(`${Math.round(fastest)} km/h at most`, 4, 10);
    ctx.fillText(shortClock(t0), 4, height - 2);
    const end = shortClock(points[points.length - 1][2]);
    ctx.fillText(end, width - 4 - ctx.measureText(end).width, height - 2);
    if (this._inSpan(this.cursorS)) {
      ctx.strokeStyle = CURSOR_COLOUR;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x(this.cursorS), 12);
      ctx.lineTo(x(this.cursorS), height - 12);
      ctx.stroke();
    }
    const mean = speeds.reduce((a, b) => a + b, 0) / speeds.length;
    canvas.setAttribute(
      "aria-label",
      `Speed over time, ${shortClock(t0)} to ${end}: up to ${Math.round(fastest)} km/h, ${Math.round(mean)} km/h on average`,
    );
  }

  // The chart's time axis: its first fix's time and its span in seconds.
  _span() {
    const points = this.points;
    const t0 = points[0][2];
    return [t0, Math.max(1e-3, points[points.length - 1][2] - t0)];
  }

  _inSpan(t) {
    if (t === null || this.points.length < 2) return false;
    const [t0, span] = this._span();
    return t >= t0 && t <= t0 + span;
  }

  // The ring on the line where the driver was at the replayed time: its last fix at or before it.
  _placeCursor() {
    if (!this._inSpan(this.cursorS)) {
      this.cursor.remove();
      return;
    }
    let i = indexAt(this.points, this.cursorS);
    if (this.points[i][2] > this.cursorS && i > 0) i -= 1;
    this.cursor.setLatLng([this.points[i][0], this.points[i][1]]).addTo(this.layer);
  }

  /** A click on the chart at `clientX`: the replayed time it stands for, or null outside the track. */
  timeAtChartX(clientX) {
    if (this.points.length < 2) return null;
    const box = this.chart.getBoundingClientRect();
    const [t0, span] = this._span();
    const share = (clientX - box.left - CHART_PAD_X) / Math.max(1, box.width - 2 * CHART_PAD_X);
    return t0 + Math.min(1, Math.max(0, share)) * span;
  }

  _seekFromChart(ev) {
    const t = this.timeAtChartX(ev.clientX);
    if (t !== null) this.seek(t);
  }

  /** Whether the ring marks a replayed time on the line (tests). */
  get cursorShown() {
    return this.layer.hasLayer(this.cursor);
  }

  /** The index of the point of the line nearest a map click, within PICK_PX; -1 if none. */
  pointNear(containerPoint) {
    let best = -1;
    let bestDistance = PICK_PX;
    this.points.forEach(([lat, lon], i) => {
      const d = this.map.latLngToContainerPoint([lat, lon]).distanceTo(containerPoint);
      if (d <= bestDistance) {
        best = i;
        bestDistance = d;
      }
    });
    return best;
  }

  /** A popup at point `i` of the line saying when the driver was there and how fast it went. */
  showTime(i) {
    const [lat, lon, t] = this.points[i];
    const text = document.createElement("p");
    text.className = "track-time";
    const speed = this.speeds[i];
    text.textContent = `${clock(t)}${speed === null || speed === undefined ? "" : ` · ${Math.round(speed)} km/h`}`;
    // A node, never a string: Leaflet appends it as it is, so nothing here is parsed as HTML.
    L.popup([lat, lon], { autoPan: false, content: text }).openOn(this.map);
    return text.textContent;
  }

  /** Container pixels of point `i` of the line (tests click there). */
  pointAt(i) {
    const point = this.points[i];
    if (!point) return null;
    const xy = this.map.latLngToContainerPoint([point[0], point[1]]);
    return [xy.x, xy.y];
  }

  _say(text, error = false) {
    this.status.textContent = text;
    this.status.dataset.state = error ? "error" : "";
  }
}
