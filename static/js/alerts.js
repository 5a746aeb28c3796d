// Zone alerts (docs/api.md, `zone_alerts`): the zone processor's enter, exit and dwell events, which the dashboard
// reads from `zone-events` read_committed. An event with "full": true holds the newest ones whole (with every
// snapshot: the page just connected, came back from a replay, or was too busy to take some): it replaces the feed.
// Otherwise it holds only new events, each also told in a short toast (a polite live region that speaks at most
// once every 5 s, gathering what came meanwhile) and, when the reader turned it on, a short beep. Events the
// first full list after a (re)connection holds are history: listed, never toasted.
// The feed is newest first and bounded, filtered by zone; a click flies to the driver and selects it as the
// search does. Ids and zone names come from Kafka: text only, each in a <bdi>.

import { setText } from "./panel.js";
import { recall, remember } from "./storage.js";

const byId = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US");
const MAX_EVENTS = 500; // held
const FEED_ROWS = 50; // shown
const SEEN_KEYS = 5000;
const TOAST_MS = 4000;
const TOAST_EVERY_MS = 5000; // a live region speaks no more often than this
const BEEP_EVERY_MS = 2000;
const SOUND_KEY = "fleet-map.alert-sound";
const VERBS = Object.freeze({ enter: "entered", exit: "left", dwell: "stayed in" });
const MARKS = Object.freeze({ enter: "→ in", exit: "← out", dwell: "● stay" });

const clock = (epochS) => new Date(epochS * 1000).toLocaleTimeString("en-GB");

/** One event's identity: the fix it came from, the zone and what happened (the same event comes again after a reconnect). */
export function eventKey(event) {
  const source = event.source || {};
  return `${source.partition}:${source.offset}:${event.zone_id}:${event.event}:${event.driver_id}`;
}

/** "<driver> entered <zone>" as nodes: the ids and names isolated, as text. */
function sentence(event) {
  const driver = document.createElement("bdi");
  driver.textContent = event.driver_id;
  const zone = document.createElement("bdi");
  zone.textContent = event.zone_name;
  return [driver, ` ${VERBS[event.event] || String(event.event)} `, zone];
}

export class Alerts {
  /** `onPick(event)` is called when the reader chooses an event in the feed: fly to its driver. */
  constructor(onPick) {
    this.onPick = onPick;
    this.events = []; // newest first
    this.seen = new Set();
    this.counters = {};
    this.connectedOnce = false;
    this.history = true; // the next event is the snapshot's history: no toast, no sound
    this.feed = byId("alert-feed");
    this.note = byId("alerts-note");
    this.summary = byId("alerts-summary");
    this.zoneSelect = byId("alert-zone");
    this.soundBox = byId("alert-sound");
    this.toast = byId("zone-toast");
    this.toastTimer = 0;
    this.toastAt = -Infinity;
    this.queued = [];
    this.queueTimer = 0;
    this.beepAt = -Infinity;
    this.audio = null;
    this.soundBox.checked = recall(SOUND_KEY) === "on";
    this.soundBox.addEventListener("change", () => {
      remember(SOUND_KEY, this.soundBox.checked ? "on" : null);
      if (this.soundBox.checked) this._beep(true); // a sample, and the audio context started by the reader's gesture
    });
    this.zoneSelect.addEventListener("change", () => this._render(new Set()));
    this.feed.addEventListener("click", (ev) => {
      const row = ev.target.closest(".alert-row");
      if (row && row.event) this.onPick(row.event);
    });
  }

  /** The connection (re)opened: the next event carries history again, already seen events are not new. */
  connected() {
    this.history = true;
  }

  /** A `zone_alerts` event: { full, events: newest first, counters: { zone_id: { enter_1h, exit_1h } } }. */
  update(payload, now = performance.now()) {
    const incoming = Array.isArray(payload && payload.events) ? payload.events : [];
    const full = Boolean(payload && payload.full);
    const before = this.seen;
    if (full) {
      this.events = [];
      this.seen = new Set();
    }
    const fresh = [];
    for (const event of incoming) {
      if (!event || typeof event.driver_id !== "string") continue;
      const key = eventKey(event);
      const known = before.has(key); // before adding it: without "full", `before` is `this.seen` itself
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      if (full) this.events.push(event);
      if (!known) fresh.push(event);
    }
    if (this.seen.size > SEEN_KEYS) this.seen = new Set(this.events.slice(0, MAX_EVENTS).map(eventKey));
    if (payload && payload.counters) this.counters = payload.counters;
    const wasHistory = this.history;
    this.history = false;
    if (!fresh.length && !full) {
      this._summary();
      return;
    }
    this.events = (full ? this.events : [...fresh, ...this.events])
      .sort((a, b) => (b.timestamp || 0) - (a.timestamp || 0))
      .slice(0, MAX_EVENTS);
    this._render(wasHistory ? new Set() : new Set(fresh.map(eventKey)));
    if (!wasHistory && fresh.length) this._announce(fresh, now);
  }

  /** The zones the filter offers (from the `zones` event). */
  setZones(zones) {
    const select = this.zoneSelect;
    const chosen = select.value;
    const collator = new Intl.Collator("en");
    const wanted = [...zones].sort((a, b) => collator.compare(a.name, b.name));
    const existing = new Map([...select.options].map((o) => [o.value, o]));
    const options = [select.options[0]];
    for (const zone of wanted) {
      let option = existing.get(zone.zone_id);
      if (!option) {
        option = document.createElement("option");
        option.value = zone.zone_id;
      }
      setText(option, zone.name);
      options.push(option);
    }
    const same = options.length === select.options.length && options.every((o, i) => select.options[i] === o);
    if (!same) select.replaceChildren(...options);
    select.value = wanted.some((z) => z.zone_id === chosen) ? chosen : "";
    if (select.value !== chosen) this._render(new Set());
  }

  _render(fresh) {
    const zoneId = this.zoneSelect.value;
    const shown = [];
    for (const event of this.events) {
      if (zoneId && event.zone_id !== zoneId) continue;
      shown.push(event);
      if (shown.length === FEED_ROWS) break;
    }
    const focusedKey = this.feed.contains(document.activeElement) ? eventKey(document.activeElement.event) : null;
    const rows = shown.map((event) => this._row(event, fresh.has(eventKey(event))));
    this.feed.replaceChildren(...rows);
    if (focusedKey) {
      const again = rows.find((item) => eventKey(item.firstChild.event) === focusedKey);
      if (again) again.firstChild.focus({ preventScroll: true });
    }
    let note = "";
    if (!this.events.length) note = "No zone events yet.";
    else if (!shown.length) note = "No events of this zone in the feed.";
    setText(this.note, note);
    this._summary();
  }

  _row(event, fresh) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "alert-row";
    if (fresh) button.classList.add("fresh");
    button.dataset.event = event.event;
    button.dataset.driverId = event.driver_id;
    button.event = event;
    const mark = document.createElement("span");
    mark.className = "alert-event";
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = MARKS[event.event] || "•";
    const what = document.createElement("span");
    what.className = "alert-what";
    what.append(...sentence(event));
    const time = document.createElement("time");
    time.className = "alert-time";
    if (Number.isFinite(event.timestamp)) {
      time.dateTime = new Date(event.timestamp * 1000).toISOString();
      time.textContent = clock(event.timestamp);
    }
    button.title = "Show this driver on the map";
    button.append(mark, what, time);
    item.append(button);
    return item;
  }

  _summary() {
    let enters = 0;
    let exits = 0;
    for (const counter of Object.values(this.counters)) {
      enters += counter.enter_1h || 0;
      exits += counter.exit_1h || 0;
    }
    setText(this.summary, enters || exits ? `last hour: ${number.format(enters)} in, ${number.format(exits)} out` : "");
  }

  // The toast says the newest event at once, then at most one sentence every TOAST_EVERY_MS, gathering the rest.
  _announce(fresh, now) {
    this.queued.push(...fresh);
    if (this.soundBox.checked) this._beep(false, now);
    if (this.queueTimer) return;
    const wait = Math.max(0, this.toastAt + TOAST_EVERY_MS - now);
    this.queueTimer = setTimeout(() => this._showToast(), wait);
  }

  _showToast() {
    this.queueTimer = 0;
    const events = this.queued.sort((a, b) => (b.timestamp || 0) - (a.timestamp || 0));
    this.queued = [];
    if (!events.length) return;
    this.toastAt = performance.now();
    const newest = events[0];
    const parts = sentence(newest);
    if (events.length > 1) parts.push(` and ${number.format(events.length - 1)} more zone ${events.length === 2 ? "event" : "events"}`);
    this.toast.replaceChildren(...parts);
    this.toast.dataset.event = newest.event;
    this.toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => {
      this.toast.hidden = true;
    }, TOAST_MS);
  }

  // A short beep through WebAudio (its context made when the reader ticks the box: browsers start audio on a gesture).
  _beep(sample, now = performance.now()) {
    if (!sample && now - this.beepAt < BEEP_EVERY_MS) return;
    this.beepAt = now;
    try {
      if (!this.audio) this.audio = new AudioContext();
      const ctx = this.audio;
      if (ctx.state === "suspended") ctx.resume();
      const oscillator = ctx.createOscillator();
      const gain = ctx.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.12, ctx.currentTime + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.18);
      oscillator.connect(gain).connect(ctx.destination);
      oscillator.start();
      oscillator.stop(ctx.currentTime + 0.2);
      this.beeps = (this.beeps || 0) + 1;
    } catch {
      // No audio here: the toast still says it.
    }
  }

  /** For tests: the feed as shown and the toast's text. */
  debug() {
    return {
      held: this.events.length,
      shown: this.feed.children.length,
      toast: this.toast.hidden ? "" : this.toast.textContent,
      beeps: this.beeps || 0,
    };
  }
}
