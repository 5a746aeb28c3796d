// The panel and the details cards (a driver's, a ride request's). Every value, and every string that
// came from Kafka (driver, rider and request ids, statuses, the topic, error sentences), goes into
// the page as text: textContent and text nodes, never markup. Every id is shown bidi-isolated (an
// element with dir="auto" and the kafka-text class, or a <bdi> inside a sentence), so that an id in
// Arabic or Hebrew, or one holding U+202E, cannot reorder the text around it.

import { COMPACT } from "./layout.js";
import { STATUS_NAMES } from "./protocol.js";

const LIST_ROWS = 40;
// The polite live region speaks the counts at most this often (screen readers would read every change otherwise).
export const ANNOUNCE_EVERY_MS = 5000;
const STATUS_LABELS = Object.freeze({ available: "available", on_trip: "on trip", offline: "offline" });
const STATUS_WORDS = STATUS_NAMES.map((name) => STATUS_LABELS[name] || "no status"); // by status code
const BADGE_TEXT = Object.freeze({
  connecting: "connecting",
  live: "live",
  stale: "stale",
  reconnecting: "reconnecting",
  refused: "refused",
  unsupported: "unsupported",
  replay: "replay",
});
const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];
const OUTCOMES = Object.freeze({
  waiting: "waiting for a driver",
  en_route: "matched: driver on the way",
  picked_up: "picked up",
  no_driver: "no driver found",
});

const byId = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US");
const oneDecimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

export function setText(element, value) {
  const text = value === null || value === undefined ? "–" : String(value);
  if (element.textContent !== text) element.textContent = text;
}

/** `before`, then `id` in a <bdi> (its own direction, isolated from the sentence), then `after`: all as text. */
export function setTextAround(element, before, id, after) {
  const isolated = document.createElement("bdi");
  isolated.textContent = id;
  element.replaceChildren(before, isolated, after);
}

export function statusLabel(status) {
  return STATUS_LABELS[status] || (status ? String(status) : "no status");
}

export function formatAge(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s ago`;
  if (s < 120) return `${Math.round(s)} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function formatHeading(degrees) {
  if (degrees === null || degrees === undefined) return null;
  return `${Math.round(degrees)}° ${COMPASS[Math.round(degrees / 45) % 8]}`;
}

function formatCount(value) {
  return value === null || value === undefined ? null : number.format(value);
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return null;
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 10) return `${oneDecimal.format(s)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function formatClock(epochS) {
  return new Date(epochS * 1000).toLocaleTimeString("en-GB");
}

export class Panel {
  constructor() {
    this.badge = byId("badge");
    this.root = byId("panel");
    this.toggle = byId("panel-toggle");
    this.searchInput = byId("search-input");
    this.searchMessage = byId("search-message");
    this.following = byId("following");
    this.followingId = byId("following-id");
    this.followingStop = byId("following-stop");
    this.list = byId("driver-list");
    this.listNote = byId("driver-list-note");
    this.sortButton = byId("drivers-sort");
    this.partitions = byId("kafka-partitions");
    this.kafkaError = byId("kafka-error");
    this.banner = byId("banner");
    this.announcer = byId("announcer");
    this.newestFirst = true;
    this._rows = [];
    this._current = 0; // the row the list's Tab stop is on (arrow keys move it)
    this._spoken = "";
    this._spokenAt = -Infinity;
    this._toggleCollapsed = this._toggleCollapsed.bind(this);
    this.toggle.addEventListener("click", this._toggleCollapsed);
    this.list.addEventListener("keydown", (ev) => this._listKey(ev));
    if (window.matchMedia(COMPACT).matches) this.setCollapsed(true);
  }

  get collapsed() {
    return this.root.dataset.collapsed === "true";
  }

  setCollapsed(collapsed) {
    this.root.dataset.collapsed = String(collapsed);
    this.toggle.setAttribute("aria-expanded", String(!collapsed));
  }

  _toggleCollapsed() {
    this.setCollapsed(!this.collapsed);
  }

  setConnection(state, detail) {
    if (this.badge.dataset.state !== state) {
      this.badge.dataset.state = state;
      setText(this.badge, BADGE_TEXT[state] || state);
    }
    this.badge.title = detail || "";
    document.body.dataset.connection = state;
  }

  showBanner(text) {
    setText(this.banner, text);
    this.banner.hidden = !text;
  }

  /** Drivers by status as this page holds and draws them (the server's `stats` counts the same way). */
  showCounts(counts) {
    for (const status of ["available", "on_trip", "offline", "unknown", "stale", "total"]) {
      const value = formatCount(counts[status]);
      setText(byId(`count-${status}`), value);
      const summary = byId(`summary-${status}`);
      if (summary) setText(summary, value);
    }
  }

  showStats(stats) {
    const fixes = stats.fixes_per_s === null || stats.fixes_per_s === undefined ? null : Math.round(stats.fixes_per_s);
    setText(byId("m-fixes"), formatCount(fixes));
    setText(byId("summary-fixes"), formatCount(fixes));
    const kafka = stats.kafka || {};
    setText(byId("m-lag"), formatCount(kafka.lag));
    setText(byId("m-invalid"), formatCount(stats.invalid_total));
    byId("m-invalid").title = Object.entries(stats.invalid || {})
      .map(([reason, count]) => `${reason}: ${count}`)
      .join("\n");
    setText(byId("m-clients"), formatCount(stats.clients));
    if (kafka.topic) setText(byId("topic"), kafka.topic);
    this.kafkaError.hidden = !kafka.error;
    setText(this.kafkaError, kafka.error || "");
    this._showPartitions(kafka.partitions || []);
  }

  /** The riders section: counts of the `riders` event, and why riders may be missing. */
  showRiders(payload) {
    const counts = payload.counts || {};
    setText(byId("riders-waiting"), formatCount(counts.waiting));
    setText(byId("summary-riders"), formatCount(counts.waiting));
    setText(byId("riders-matched"), formatCount(counts.matched_60s));
    setText(byId("riders-no-driver"), formatCount(counts.no_driver_60s));
    byId("riders-no-driver").title = `${formatCount(counts.no_driver_total) ?? 0} since the dashboard started`;
    setText(byId("riders-median"), formatSeconds(counts.median_match_s));
    setText(byId("riders-en-route"), formatCount(counts.en_route));
    const notes = [];
    const kafka = payload.kafka || {};
    if (kafka.error) notes.push(kafka.error);
    if (payload.invalid_total) notes.push(`${formatCount(payload.invalid_total)} refused ride messages`);
    if (payload.omitted) notes.push(`${formatCount(payload.omitted)} older rides not drawn`);
    setText(byId("riders-note"), notes.join(" · "));
  }

  showMeters(latency, fps) {
    setText(
      byId("m-latency"),
      latency ? `${Math.round(latency.p50)} / ${Math.round(latency.p95)} ms` : null,
    );
    setText(byId("m-fps"), fps === null ? null : oneDecimal.format(fps));
  }

  _showPartitions(partitions) {
    const rows = this.partitions.rows;
    while (rows.length > partitions.length) this.partitions.deleteRow(-1);
    while (rows.length < partitions.length) {
      const row = this.partitions.insertRow();
      for (let c = 0; c < 4; c += 1) row.insertCell();
    }
    partitions.forEach((p, i) => {
      const cells = rows[i].cells;
      setText(cells[0], p.partition);
      setText(cells[1], formatCount(p.end_offset));
      setText(cells[2], formatCount(p.position));
      setText(cells[3], formatCount(p.lag));
      rows[i].classList.toggle("behind", (p.lag || 0) > 1000);
    });
  }

  /**
   * Say the counts through the live region, at most every ANNOUNCE_EVERY_MS and only when they changed,
   * so that a screen reader is told how the fleet stands without being talked over at every tick.
   */
  announce(counts, ridersWaiting, now) {
    if (now - this._spokenAt < ANNOUNCE_EVERY_MS) return;
    const n = (value) => number.format(value || 0);
    let text = `${n(counts.total)} drivers: ${n(counts.available)} available, ${n(counts.on_trip)} on trip, ${n(counts.offline)} offline`;
    if (counts.stale) text += `, ${n(counts.stale)} stale`;
    if (ridersWaiting !== null) text += `. ${n(ridersWaiting)} ${ridersWaiting === 1 ? "rider" : "riders"} waiting`;
    text += ".";
    if (text === this._spoken) return;
    this._spoken = text;
    this._spokenAt = now;
    setText(this.announcer, text);
  }

  /** Whether the keyboard is in the drivers list (it then holds still: rows do not move under the focus). */
  get listFocused() {
    return this.list.contains(document.activeElement);
  }

  /** The drivers list: the first rows of the fleet sorted by last seen, filtered by the search text. */
  showDrivers(fleet, serverNowS, filter, onPick) {
    if (this.collapsed || this.listFocused) return;
    const needle = filter.trim().toLowerCase();
    const order = [];
    for (let s = 0; s < fleet.count; s += 1) {
      if (!needle || fleet.ids[s].toLowerCase().includes(needle)) order.push(s);
    }
    const ts = fleet.fixTs;
    order.sort(this.newestFirst ? (a, b) => ts[b] - ts[a] : (a, b) => ts[a] - ts[b]);
    const shown = Math.min(order.length, LIST_ROWS);
    while (this._rows.length < shown) this._rows.push(this._listRow(onPick));
    for (let r = 0; r < this._rows.length; r += 1) {
      const row = this._rows[r];
      if (r >= shown) {
        if (row.item.parentNode) row.item.remove();
        continue;
      }
      const s = order[r];
      row.item.dataset.driverId = fleet.ids[s];
      row.dot.dataset.status = STATUS_NAMES[fleet.status[s]];
      row.dot.classList.toggle("faded", fleet.stale[s] === 1);
      setText(row.id, fleet.ids[s]);
      setText(row.status, `, ${STATUS_WORDS[fleet.status[s]]}${fleet.stale[s] ? ", stale" : ""},`);
      setText(row.age, formatAge(serverNowS - ts[s]));
      if (!row.item.parentNode) this.list.append(row.item); // rows past `shown` are detached, so order holds
    }
    this._current = Math.min(this._current, Math.max(0, shown - 1));
    this._rows.forEach((row, r) => (row.button.tabIndex = r === this._current ? 0 : -1));
    let note = "";
    if (order.length > shown) note = `${number.format(shown)} of ${number.format(order.length)}${needle ? " matching" : ""}`;
    else if (needle && !order.length) note = "no driver matches";
    setText(this.listNote, note);
  }

  _listRow(onPick) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "driver-row";
    const dot = document.createElement("i");
    dot.className = "dot";
    const id = document.createElement("span");
    id.className = "mono driver-id kafka-text";
    id.dir = "auto";
    const status = document.createElement("span"); // the status in words, for screen readers (the dot shows it)
    status.className = "visually-hidden";
    const age = document.createElement("span");
    age.className = "age";
    button.append(dot, id, status, age);
    item.append(button);
    button.addEventListener("click", () => onPick(item.dataset.driverId));
    return { item, button, dot, id, status, age };
  }

  // Arrow keys, Home and End move the focus through the rows; Tab leaves the list (one Tab stop, on the current row).
  _listKey(ev) {
    const rows = this._rows.filter((row) => row.item.parentNode);
    const at = rows.findIndex((row) => row.button === document.activeElement);
    if (at < 0 || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    ev.stopPropagation();
    this._current = Math.max(0, Math.min(rows.length - 1, to));
    rows.forEach((row, r) => (row.button.tabIndex = r === this._current ? 0 : -1));
    rows[this._current].button.focus();
  }

  toggleOrder() {
    this.newestFirst = !this.newestFirst;
    this.sortButton.dataset.order = this.newestFirst ? "newest" : "oldest";
    setText(this.sortButton, this.newestFirst ? "last seen: newest first" : "last seen: oldest first");
  }

  showFollowing(driverId) {
    this.following.hidden = driverId === null;
    setText(this.followingId, driverId || "");
  }

  say(text) {
    setText(this.searchMessage, text || "");
  }

  /** "No driver “<id>” on the map.", the id isolated from the sentence. */
  sayNoDriver(driverId) {
    setTextAround(this.searchMessage, "No driver “", driverId, "” on the map.");
  }
}

/** The details card of the selected driver. */
export class Card {
  constructor() {
    this.root = byId("card");
    this.closeButton = byId("card-close");
    this.followButton = byId("card-follow");
    this.driverId = null;
    this.details = null;
  }

  get open() {
    return !this.root.hidden;
  }

  show(driverId) {
    this.driverId = driverId;
    this.details = null;
    setText(byId("card-id"), driverId);
    for (const field of ["status", "speed", "heading", "age", "partition", "offset"]) setText(byId(`card-${field}`), null);
    setText(byId("card-note"), "");
    byId("card-dot").dataset.status = "unknown";
    this.root.hidden = false;
  }

  hide() {
    this.root.hidden = true;
    this.driverId = null;
    this.details = null;
  }

  fill(details) {
    this.details = details;
    byId("card-dot").dataset.status = details.status || "unknown";
    byId("card-dot").classList.toggle("faded", Boolean(details.stale));
    setText(byId("card-status"), statusLabel(details.status) + (details.stale ? " (stale)" : ""));
    setText(byId("card-speed"), details.speed_kmh == null ? null : `${oneDecimal.format(details.speed_kmh)} km/h`);
    setText(byId("card-heading"), formatHeading(details.heading));
    setText(byId("card-partition"), details.partition);
    setText(byId("card-offset"), formatCount(details.offset));
    setText(byId("card-note"), "");
  }

  age(serverNowS, newestFixS) {
    if (!this.details) return;
    setText(byId("card-age"), formatAge(serverNowS - Math.max(this.details.timestamp, newestFixS || -Infinity)));
  }

  note(text) {
    setText(byId("card-note"), text);
  }
}

/** The card of the selected ride request: its request and its answer, as text. */
export class RiderCard {
  constructor() {
    this.root = byId("rider-card");
    this.closeButton = byId("rider-card-close");
    this.driverButton = byId("rider-card-driver");
    this.requestId = null;
  }

  get open() {
    return !this.root.hidden;
  }

  show(requestId) {
    this.requestId = requestId;
    setText(byId("rider-card-id"), requestId);
    this.root.hidden = false;
  }

  hide() {
    this.root.hidden = true;
    this.requestId = null;
  }

  /** Fill from the ride as the latest `riders` event has it; undefined once the dashboard forgot it. */
  fill(ride, serverNowS) {
    if (!ride) {
      setText(byId("rider-card-note"), "The dashboard no longer shows this ride.");
      return;
    }
    byId("rider-card-pin").dataset.state = ride.state;
    setText(byId("rider-card-rider"), ride.rider_id);
    setText(byId("rider-card-outcome"), OUTCOMES[ride.state] || ride.state);
    setText(byId("rider-card-requested"), `${formatClock(ride.requested_at)} (${formatAge(serverNowS - ride.requested_at)})`);
    const answered = ride.answered_at === null ? null : ride.answered_at - ride.requested_at;
    let wait = formatSeconds(answered);
    if (ride.state === "waiting") wait = `waiting ${formatSeconds(serverNowS - ride.requested_at)}`;
    else if (ride.state === "no_driver") wait = `gave up after ${wait}`;
    setText(byId("rider-card-wait"), wait);
    setText(this.driverButton, ride.driver_id);
    this.driverButton.disabled = !ride.driver_id;
    setText(byId("rider-card-distance"), ride.distance_m === null ? null : `${number.format(Math.round(ride.distance_m))} m`);
    setText(byId("rider-card-eta"), ride.eta_s === null ? null : formatSeconds(ride.eta_s));
    setText(byId("rider-card-note"), "");
  }
}
