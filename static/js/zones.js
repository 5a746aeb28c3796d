// Zones (docs/api.md, "Zones"): the places a dispatcher watches, kept in Kafka's compacted `zones` topic. Each
// `zones` event lists every zone (sent when one is written or deleted), each `zone_counts` event the drivers
// inside each one now (once a second at most); the page draws them on the map (a polygon, or a
// circle for a Point with properties.radius_m) with the name as a label, and lists them in the panel with their
// counts and the enters and exits of the last hour (from `zone_alerts`, through setCounters). A new zone is drawn
// with leaflet-geoman (npm, pinned, served by the dashboard), named in a small form in the panel, and POSTed to
// api/zones; the list deletes one with DELETE api/zones/<id>. A zone's name comes from Kafka: it reaches the page
// as text only (textContent; the map's label is an element holding a text node), in bidi-isolated elements.

import { setText, setTextAround } from "./panel.js";

const byId = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US");
// fleet/zones.py's limits, checked here too so that the form can say so before asking.
const MAX_NAME_CHARS = 100;
const MAX_RADIUS_M = 50000;
// Names on the map: at most this many, those of the zones in view.
const MAX_LABELS = 200;
const LIST_ROWS = 200;
const KEYS_HINT = " From the keyboard: on the map, arrow keys move it and Space puts a point at the cross in its middle.";
const DRAW_HINTS = Object.freeze({
  Polygon: `Click on the map for each corner; click the first corner again (or press Enter) to close the polygon. Esc cancels.${KEYS_HINT}`,
  Circle: `Click on the map for the centre, then again for the edge. Esc cancels.${KEYS_HINT}`,
});
const DRAW_BUTTONS = Object.freeze({ Polygon: "zone-draw-polygon", Circle: "zone-draw-circle" });

/** The GeoJSON Feature of a shape geoman drew: a Polygon, or a Point with properties.radius_m for a circle. */
export function featureOf(layer, name, dwellS) {
  const properties = { name };
  if (dwellS !== null) properties.dwell_s = dwellS;
  if (layer instanceof L.Circle) {
    const centre = layer.getLatLng();
    properties.radius_m = Math.round(layer.getRadius() * 10) / 10;
    return { type: "Feature", geometry: { type: "Point", coordinates: [centre.lng, centre.lat] }, properties };
  }
  const geometry = layer.toGeoJSON(6).geometry;
  return { type: "Feature", geometry, properties };
}

const collator = new Intl.Collator("en");

/** A cheap fingerprint of a feature's shape (the `zones` event repeats every zone each second). */
function fingerprint(feature) {
  const geometry = (feature && feature.geometry) || {};
  const radius = ((feature && feature.properties) || {}).radius_m;
  let sum = 0;
  let n = 0;
  const add = (value) => {
    if (Array.isArray(value)) value.forEach(add);
    else {
      sum += Number(value) * (n + 1);
      n += 1;
    }
  };
  add(geometry.coordinates);
  return `${geometry.type}:${n}:${sum}:${radius}`;
}

/** A Leaflet layer for a zone's feature (a stored, normalised GeoJSON Feature), or null for a shape we cannot draw. */
function layerOf(feature, style) {
  const geometry = feature && feature.geometry;
  if (!geometry) return null;
  if (geometry.type === "Point") {
    const [lon, lat] = geometry.coordinates;
    const radius = Number((feature.properties || {}).radius_m);
    return Number.isFinite(radius) ? L.circle([lat, lon], { ...style, radius }) : null;
  }
  if (geometry.type === "Polygon") {
    return L.polygon(
      geometry.coordinates.map((ring) => ring.map(([lon, lat]) => [lat, lon])),
      style,
    );
  }
  return null;
}

function zoneStyle() {
  const css = getComputedStyle(document.documentElement);
  return {
    color: css.getPropertyValue("--zone").trim() || "#334155",
    fillColor: css.getPropertyValue("--zone").trim() || "#334155",
    weight: 2,
    opacity: 0.85,
    fillOpacity: 0.07,
    interactive: false,
    pmIgnore: true, // geoman leaves stored zones alone: they change only through the API
  };
}

function pendingStyle() {
  const colour = getComputedStyle(document.documentElement).getPropertyValue("--zone-pending").trim() || "#0f766e";
  return { color: colour, fillColor: colour, weight: 2.5, opacity: 1, fillOpacity: 0.15, dashArray: "6 4" };
}

export class Zones {
  /**
   * `map` is the Leaflet map (with geoman's map.pm); `onChange(zones)` is told the zone list after every change
   * (the alerts' zone filter follows it); `onDrawing(drawing)` when drawing starts (true: on a phone the page folds
   * the panel away from the map) and when a shape waits for its name (false: the panel's form asks it).
   */
  constructor(map, onChange = () => {}, onDrawing = () => {}) {
    this.map = map;
    this.onChange = onChange;
    this.onDrawing = onDrawing;
    this.layer = L.layerGroup().addTo(map);
    this.labels = L.layerGroup().addTo(map);
    this.byId = new Map(); // zone id -> { zone, shape, key, row, label }
    this.counters = {};
    this.sorted = true; // the list is in name order (false: sort it at the next update)
    this.told = true; // onChange has the current zones
    this.drawingShape = null;
    this.pending = null; // the shape just drawn, until it is saved or dropped
    this.saving = false;
    this.summary = byId("zones-summary");
    this.list = byId("zone-list");
    this.note = byId("zones-note");
    this.hint = byId("zone-hint");
    this.form = byId("zone-form");
    this.nameInput = byId("zone-name");
    this.dwellInput = byId("zone-dwell");
    this.error = byId("zone-error");
    this.saveButton = byId("zone-save");
    this.drawable = Boolean(map.pm);
    for (const [shape, id] of Object.entries(DRAW_BUTTONS)) {
      const button = byId(id);
      button.disabled = !this.drawable;
      button.addEventListener("click", () => (this.drawingShape === shape ? this.cancelDrawing() : this.startDrawing(shape)));
    }
    if (!this.drawable) setText(this.hint, "The draw tool did not load: zones can still be added with POST api/zones.");
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this._save();
    });
    byId("zone-cancel").addEventListener("click", () => {
      this._drop();
      this._focusTool();
    });
    this.nameInput.addEventListener("input", () => this._showError(""));
    if (this.drawable) {
      map.on("pm:create", (ev) => this._drawn(ev.layer));
      map.on("pm:drawend", () => this._drawingEnded());
    }
    map.on("moveend", () => this._placeLabels());
    map.getContainer().addEventListener("keydown", (ev) => this._mapKey(ev));
  }

  // Drawing from the keyboard: Space on the map puts a point (a corner, a centre, an edge) at the map's middle,
  // where a cross is shown while the map has the focus; the arrow keys move the map under it.
  _mapKey(ev) {
    if (!this.drawing || ev.key !== " " || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    ev.preventDefault();
    ev.stopPropagation();
    const map = this.map;
    const latlng = map.getCenter();
    const at = { latlng, containerPoint: map.latLngToContainerPoint(latlng), layerPoint: map.latLngToLayerPoint(latlng) };
    const originalEvent = new MouseEvent("click");
    map.fire("mousemove", { ...at, originalEvent }); // geoman places the point where its hint marker is
    map.fire("click", { ...at, originalEvent });
  }

  /** Whether geoman is drawing (the page's map clicks then belong to it). */
  get drawing() {
    return this.drawingShape !== null;
  }

  get zones() {
    return [...this.byId.values()].map((entry) => entry.zone);
  }

  /** The `zones` event (or GET api/zones): every zone, with its counts inside now. */
  update(payload) {
    const zones = Array.isArray(payload && payload.zones) ? payload.zones : [];
    const seen = new Set();
    for (const zone of zones) {
      if (!zone || typeof zone.zone_id !== "string") continue;
      seen.add(zone.zone_id);
      this._put(zone);
    }
    for (const id of [...this.byId.keys()]) if (!seen.has(id)) this._remove(id);
    if (!this.sorted) this._listRows();
    this._placeLabels();
    setText(this.summary, zones.length ? `${number.format(zones.length)} ${zones.length === 1 ? "zone" : "zones"}` : "");
    if (!this.told) {
      this.told = true;
      this.onChange(this.zones);
    }
  }

  /** The `zone_counts` event: the drivers inside each zone now, { zone_id: {available, on_trip, other, total} }. */
  updateCounts(payload) {
    const inside = (payload && payload.inside) || {};
    for (const [id, entry] of this.byId) {
      entry.zone = { ...entry.zone, inside: inside[id] || {} };
      this._fillCounts(entry);
    }
  }

  /** The last hour's enters and exits per zone: { zone_id: { enter_1h, exit_1h } }. */
  setCounters(counters) {
    this.counters = counters || {};
    for (const entry of this.byId.values()) this._fillCounts(entry);
  }

  /** Fetch every zone now (after a save or a delete, not to wait for the next event). */
  async refresh() {
    try {
      const response = await fetch("api/zones", { cache: "no-store" });
      if (response.ok) this.update(await response.json());
    } catch {
      // The next `zones` event brings them.
    }
  }

  /** Show the whole zone on the map. */
  show(zoneId) {
    const entry = this.byId.get(zoneId);
    if (entry) this.map.fitBounds(entry.shape.getBounds(), { padding: [60, 60], maxZoom: 16 });
  }

  startDrawing(shape) {
    if (!this.drawable) return;
    this._drop();
    this.map.pm.disableDraw();
    this.drawingShape = shape;
    this.lastShape = shape;
    const style = pendingStyle();
    this.map.pm.enableDraw(shape, {
      snappable: false,
      tooltips: true,
      finishOnEnter: true,
      allowSelfIntersection: false,
      continueDrawing: false,
      maxRadiusCircle: MAX_RADIUS_M,
      templineStyle: style,
      hintlineStyle: { ...style, dashArray: "4 4", fillOpacity: 0 },
      pathOptions: style,
    });
    this._pressed(shape);
    this.map.getContainer().classList.add("drawing-zone");
    setText(this.hint, DRAW_HINTS[shape]);
    this.onDrawing(true);
  }

  cancelDrawing() {
    if (this.drawable) this.map.pm.disableDraw();
    this._drawingEnded();
    setText(this.hint, "");
    this.onDrawing(false);
  }

  /** Escape: stop drawing, or drop the shape waiting for a name. Whether there was anything to cancel. */
  escape() {
    if (this.drawing) {
      this.cancelDrawing();
      return true;
    }
    if (this.pending) {
      const inForm = this.form.contains(document.activeElement);
      this._drop();
      if (inForm) this._focusTool(); // the form is gone: the keyboard goes back to the tool it came from
      return true;
    }
    return false;
  }

  _drawingEnded() {
    this.drawingShape = null;
    this._pressed(null);
    this.map.getContainer().classList.remove("drawing-zone");
  }

  _pressed(shape) {
    for (const [name, id] of Object.entries(DRAW_BUTTONS)) byId(id).setAttribute("aria-pressed", String(name === shape));
  }

  // geoman finished a shape: keep it on the map, dashed, and ask for its name.
  _drawn(layer) {
    this._drawingEnded();
    this.pending = layer;
    layer.setStyle(pendingStyle());
    setText(this.hint, "");
    this._showError("");
    this.form.hidden = false;
    this.nameInput.value = "";
    this.dwellInput.value = "";
    this.onDrawing(false);
    this.nameInput.focus();
  }

  async _save() {
    if (!this.pending || this.saving) return;
    const name = this.nameInput.value.trim();
    if (!name) return this._showError("Give the zone a name.");
    if (name.length > MAX_NAME_CHARS) return this._showError(`A name has at most ${MAX_NAME_CHARS} characters.`);
    const dwellText = this.dwellInput.value.trim();
    const dwell = dwellText === "" ? null : Number(dwellText);
    if (dwell !== null && !(Number.isFinite(dwell) && dwell > 0)) {
      return this._showError("The stay before an alert is a number of seconds above 0, or empty for none.");
    }
    const feature = featureOf(this.pending, name, dwell);
    this.saving = true;
    this.saveButton.disabled = true;
    try {
      const response = await fetch("api/zones", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(feature),
      });
      if (response.status === 201) {
        this._drop();
        this._focusTool();
        setText(this.hint, "");
        await this.refresh();
        return;
      }
      this._showError(await this._refusal(response));
    } catch (error) {
      this._showError(`The zone was not saved: ${error.message}`);
    } finally {
      this.saving = false;
      this.saveButton.disabled = false;
    }
  }

  // The server's sentence for a refused zone (400 {error, detail}), as text.
  async _refusal(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON: say the status.
    }
    const detail = body && (body.detail || body.error);
    return detail ? `Not saved: ${detail}` : `Not saved: the dashboard answered HTTP ${response.status}.`;
  }

  _showError(text) {
    setText(this.error, text);
    this.error.hidden = !text;
  }

  _focusTool() {
    byId(DRAW_BUTTONS[this.lastShape] || DRAW_BUTTONS.Polygon).focus();
  }

  // Forget the shape waiting for a name, and close the form.
  _drop() {
    if (this.pending) this.pending.remove();
    this.pending = null;
    this.form.hidden = true;
    this._showError("");
  }

  async _delete(zoneId) {
    const entry = this.byId.get(zoneId);
    try {
      const response = await fetch(`api/zones/${encodeURIComponent(zoneId)}`, { method: "DELETE" });
      if (!response.ok && response.status !== 404) throw new Error(`HTTP ${response.status}`);
      this._remove(zoneId);
      this._listRows();
      this.told = true;
      this.onChange(this.zones);
      setText(this.note, "");
    } catch (error) {
      if (entry) setTextAround(this.note, "Could not delete “", entry.zone.name, `”: ${error.message}`);
    }
  }

  // --- drawing and listing ------------------------------------------------------------------

  _put(zone) {
    let entry = this.byId.get(zone.zone_id);
    const key = fingerprint(zone.feature);
    if (entry && entry.key !== key) {
      this._remove(zone.zone_id);
      entry = undefined;
    }
    if (!entry) {
      const shape = layerOf(zone.feature, zoneStyle());
      if (!shape) return;
      shape.addTo(this.layer);
      entry = { zone, shape, key, row: this._row(zone.zone_id), label: null };
      this.byId.set(zone.zone_id, entry);
      this._changed();
    } else if (entry.zone.name !== zone.name) {
      this._changed();
    }
    entry.zone = zone;
    this._fillRow(entry);
  }

  _remove(zoneId) {
    const entry = this.byId.get(zoneId);
    if (!entry) return;
    entry.shape.remove();
    if (entry.label) entry.label.remove();
    entry.row.item.remove();
    this.byId.delete(zoneId);
    this._changed();
  }

  // The set of zones or a name changed: sort the list again, and tell the alerts' filter.
  _changed() {
    this.sorted = false;
    this.told = false;
  }

  // The zones' names in view, as text on the map: a divIcon holding an element whose only child is a text node.
  _placeLabels() {
    if (!this.map._loaded) return;
    const view = this.map.getBounds().pad(0.1);
    let shown = 0;
    for (const entry of this.byId.values()) {
      const centre = entry.shape instanceof L.Circle ? entry.shape.getLatLng() : entry.shape.getBounds().getCenter();
      const wanted = shown < MAX_LABELS && view.contains(centre);
      if (wanted) shown += 1;
      if (wanted && !entry.label) {
        const text = document.createElement("span");
        text.dir = "auto";
        text.textContent = entry.zone.name;
        const icon = L.divIcon({ className: "zone-label", html: text, iconSize: null });
        entry.label = L.marker(centre, { icon, interactive: false, keyboard: false, pmIgnore: true }).addTo(this.labels);
        entry.labelText = text;
      } else if (!wanted && entry.label) {
        entry.label.remove();
        entry.label = null;
      } else if (entry.label) {
        setText(entry.labelText, entry.zone.name);
      }
    }
  }

  _listRows() {
    this.sorted = true;
    const entries = [...this.byId.values()].sort(
      (a, b) => collator.compare(a.zone.name, b.zone.name) || (a.zone.zone_id < b.zone.zone_id ? -1 : 1),
    );
    entries.forEach((entry, i) => {
      const item = entry.row.item;
      if (i >= LIST_ROWS) {
        item.remove();
        return;
      }
      if (this.list.children[i] !== item) this.list.insertBefore(item, this.list.children[i] || null);
    });
    const total = entries.length;
    setText(this.note, total > LIST_ROWS ? `The first ${number.format(LIST_ROWS)} of ${number.format(total)} zones, by name.` : "");
  }

  _row(zoneId) {
    const item = document.createElement("li");
    item.className = "zone-row";
    item.dataset.zoneId = zoneId;
    const name = document.createElement("button");
    name.type = "button";
    name.className = "text-button zone-name kafka-text";
    name.dir = "auto";
    name.addEventListener("click", () => this.show(zoneId));
    const facts = document.createElement("div");
    facts.className = "zone-facts";
    const make = (cls) => {
      const span = document.createElement("span");
      span.className = cls;
      return span;
    };
    const available = make("zone-available");
    const onTrip = make("zone-on-trip");
    const total = make("zone-total");
    const hour = make("zone-hour");
    facts.append(available, onTrip, total, hour);
    const actions = document.createElement("div");
    actions.className = "zone-actions";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon-button zone-delete";
    remove.title = "Delete the zone";
    const cross = document.createElement("span");
    cross.setAttribute("aria-hidden", "true");
    cross.textContent = "×";
    remove.append(cross);
    remove.addEventListener("click", () => this._confirm(row));
    actions.append(remove);
    item.append(name, actions, facts);
    const row = { item, name, available, onTrip, total, hour, actions, remove, zoneId };
    return row;
  }

  // Delete asks once more, in the row: "Delete? Yes / No", the keyboard on No.
  _confirm(row) {
    const entry = this.byId.get(row.zoneId);
    if (!entry) return;
    const question = document.createElement("span");
    question.className = "zone-confirm";
    question.textContent = "Delete?";
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "chip danger zone-delete-yes";
    yes.textContent = "Yes";
    yes.setAttribute("aria-label", `Yes, delete the zone ${entry.zone.name}`);
    const no = document.createElement("button");
    no.type = "button";
    no.className = "chip zone-delete-no";
    no.textContent = "No";
    no.setAttribute("aria-label", `No, keep the zone ${entry.zone.name}`);
    const restore = () => {
      row.actions.replaceChildren(row.remove);
      row.remove.focus();
    };
    yes.addEventListener("click", () => this._delete(row.zoneId));
    no.addEventListener("click", restore);
    row.actions.replaceChildren(question, yes, no);
    no.focus();
  }

  _fillRow(entry) {
    const { zone, row } = entry;
    setText(row.name, zone.name);
    row.name.title = `${zone.kind === "circle" ? "Circle" : "Polygon"}: show it on the map`;
    row.remove.setAttribute("aria-label", `Delete the zone ${zone.name}`);
    this._fillCounts(entry);
  }

  _fillCounts(entry) {
    const { zone, row } = entry;
    const inside = zone.inside || {};
    const n = (value) => number.format(value || 0);
    this._fact(row.available, "available", n(inside.available), "available");
    this._fact(row.onTrip, "on_trip", n(inside.on_trip), "on trip");
    setText(row.total, `${n(inside.total)} inside`);
    const counter = this.counters[zone.zone_id];
    setText(row.hour, counter ? `last hour: ${n(counter.enter_1h)} in, ${n(counter.exit_1h)} out` : "");
  }

  // "● 3" with the status in words for screen readers (the dot shows it).
  _fact(span, status, value, words) {
    if (!span.firstChild) {
      const dot = document.createElement("i");
      dot.className = "dot";
      dot.dataset.status = status;
      dot.setAttribute("aria-hidden", "true");
      const count = document.createElement("b");
      const label = document.createElement("span");
      label.className = "visually-hidden";
      label.textContent = ` ${words}`;
      span.append(dot, count, label);
      span.title = words;
    }
    setText(span.children[1], value);
  }

  /** Colours follow the theme. */
  setTheme() {
    const style = zoneStyle();
    for (const entry of this.byId.values()) entry.shape.setStyle(style);
    if (this.pending) this.pending.setStyle(pendingStyle());
  }

  /** For tests: what is drawn. */
  debug() {
    return {
      zones: this.byId.size,
      labels: [...this.byId.values()].filter((e) => e.label).map((e) => e.labelText.textContent),
      drawing: this.drawingShape,
      pending: this.pending !== null,
    };
  }
}
