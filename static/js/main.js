// The live map page. folium's script creates the Leaflet map, then its FleetHook element calls
// start(map) here: we connect to the dashboard over Socket.IO, keep the fleet in typed arrays and
// the riders in a small list, draw both every animation frame on one canvas (once a second for a
// reader who asks for less motion), and keep the panel and the details cards current. Everything
// can be done from the keyboard: the shortcuts are in _bindKeys and on the page's ? sheet.

import { io } from "socket.io-client";
import { Alerts } from "./alerts.js";
import { KafkaCluster } from "./cluster.js";
import { Density } from "./density.js";
import { Fleet, latitudeOf, longitudeOf } from "./fleet.js";
import { FleetLayer } from "./layer.js";
import { Layout } from "./layout.js";
import { FrameRate, LatencyWindow } from "./meters.js";
import { Card, Panel, RiderCard } from "./panel.js";
import { STATUS_NAMES, VERSION, decodeRecords, headingDegrees, speedKmh } from "./protocol.js";
import { Replay, STEPS_S, Timebar } from "./replay.js";
import { RiderPainter, Riders } from "./riders.js";
import { Search } from "./search.js";
import { Shortcuts } from "./shortcuts.js";
import { Theme } from "./theme.js";
import { DriverTrack } from "./track.js";
import { Zones } from "./zones.js";

// No frame for this long while connected: the badge says "stale".
const STALE_CONNECTION_MS = 5000;
const SECOND_MS = 1000;
const FOLLOW_ZOOM = 15;
const FIT_MAX_ZOOM = 15;
const TRAIL_STYLE = { weight: 4, opacity: 0.6, interactive: false, lineJoin: "round", lineCap: "round" };
// With prefers-reduced-motion the fleet is drawn this often (and whenever the map moves), each driver where its newest fix is.
const REDUCED_MOTION_FRAME_MS = 1000;
const REDUCED_MOTION = "(prefers-reduced-motion: reduce)";

export function start(map) {
  const page = new LivePage(map);
  window.fleetDebug = page.debugHook();
  return page;
}

const epochMs = () => performance.timeOrigin + performance.now();

class LivePage {
  constructor(map) {
    this.map = map;
    this.theme = new Theme(document.getElementById("theme-toggle"), () => this._themeChanged());
    this.fleet = new Fleet();
    // Read once and on change only: reading `matches` at every frame would swallow Chromium's change events.
    const reducedMotion = window.matchMedia(REDUCED_MOTION);
    reducedMotion.addEventListener("change", (ev) => this._motionChanged(ev.matches));
    this.lessMotion = reducedMotion.matches;
    this.fleet.glide = !this.lessMotion;
    this.layer = new FleetLayer(this.fleet, this.theme.palette).addTo(map);
    this.riders = new Riders();
    this.riderPainter = new RiderPainter(this.riders, this.fleet, this.theme.palette);
    this.layer.addOverlay(this.riderPainter);
    this.panel = new Panel();
    this.card = new Card();
    this.riderCard = new RiderCard();
    this.track = new DriverTrack(
      map,
      () => this.serverNowS(),
      (bounds) => this._fitTrack(bounds),
      (t) => this.replay.seek(t),
    );
    this.shortcuts = new Shortcuts();
    // Zones, their alerts and the supply-and-demand hexagons (issue #14): zones.js, alerts.js, density.js.
    this.alerts = new Alerts((event) => this._pickAlert(event));
    this.zones = new Zones(
      map,
      (zones) => this.alerts.setZones(zones),
      (drawing) => this.layout.compact && this.panel.setCollapsed(drawing), // on a phone the map needs the room
    );
    this.density = new Density(map);
    this.cluster = new KafkaCluster(document.getElementById("kafka-cluster"));
    this.layout = new Layout({
      panel: this.panel.root,
      cards: [this.card.root, this.riderCard.root],
      cardSlot: document.getElementById("summary"),
      legend: document.getElementById("legend"),
      legendSlot: document.getElementById("driver-counts"),
      mapArea: document.getElementById("map-area"),
      onChange: () => map.invalidateSize({ pan: false }),
    });
    this.search = new Search({
      ids: () => this.fleet.ids,
      statusOf: (id) => this._statusOf(id),
      choose: (id) => this.select(id, true),
      submit: (text, total) => this._searchFailed(text, total),
    });
    this.lastDrawAt = -Infinity;
    this.redraw = true; // draw at the next frame even with reduced motion (a selection, a theme)
    this.latency = new LatencyWindow();
    this.frameRate = new FrameRate();
    this.serverOffsetMs = 0; // server clock minus ours, from the latest event
    this.lastFrameAt = 0;
    this.connected = false;
    this.resyncAsked = false;
    this.fitted = false;
    this.userMoved = false;
    this.selectedId = null;
    this.followId = null;
    this.flying = false;
    this.trail = null;
    this.unsupported = false;
    this._here = new Float64Array(2);
    this.socket = this._connect();
    this.replay = new Replay(this.socket, () => this._replayChanged());
    this.timebar = new Timebar(this.replay, () => this.replay.now(performance.now()));
    this._nameMap();
    this._bindMap();
    this._bindPanel();
    this._bindKeys();
    this._frame = this._frame.bind(this);
    requestAnimationFrame(this._frame);
    setInterval(() => this._everySecond(), SECOND_MS);
  }

  // While replaying: the replayed time (stale marks, ages and counts follow it).
  serverNowS() {
    const replayed = this.replay ? this.replay.now(performance.now()) : null;
    if (replayed !== null) return replayed;
    return (epochMs() + this.serverOffsetMs) / 1000;
  }

  // --- Socket.IO ---------------------------------------------------------------------------

  _connect() {
    // With DASHBOARD_TOKEN, the HttpOnly cookie ?token= set goes with the handshake: the page never holds the token.
    const socket = io({
      reconnectionDelay: 500,
      reconnectionDelayMax: 2000,
    });
    socket.on("connect", () => {
      this.connected = true;
      this.lastFrameAt = performance.now();
      this._showConnection();
      if (this.replay) this.replay.reconnected(performance.now());
      this.alerts.connected();
    });
    socket.on("disconnect", (reason) => {
      this.connected = false;
      this.panel.setConnection("reconnecting", `connection lost (${reason}); trying again`);
      if (reason === "io server disconnect") socket.connect(); // the server closed us: ask again
    });
    socket.on("connect_error", (error) => {
      if (socket.active) {
        this.panel.setConnection("reconnecting", `cannot reach the dashboard (${error.message}); trying again`);
      } else {
        this.panel.setConnection("refused", `the dashboard refused the connection: ${error.message}`);
        this.panel.showBanner("The dashboard refused this page's connection: open it again with its ?token=.");
      }
    });
    socket.on("snapshot", (payload) => this._onSnapshot(payload));
    socket.on("positions", (payload) => this._onPositions(payload));
    socket.on("stats", (payload) => this._onStats(payload));
    socket.on("riders", (payload) => this._onRiders(payload));
    socket.on("replay_refused", (payload) => this.replay.refused(payload || {}));
    socket.on("zones", (payload) => this._speaks(payload) && this.zones.update(payload));
    socket.on("zone_counts", (payload) => this._speaks(payload) && this.zones.updateCounts(payload));
    socket.on("zone_alerts", (payload) => this._onZoneAlerts(payload));
    return socket;
  }

  _speaks(payload) {
    if (payload && payload.v === VERSION) return true;
    this.unsupported = true;
    this.panel.setConnection("unsupported", "the dashboard speaks another protocol version");
    this.panel.showBanner(
      `This page speaks protocol v${VERSION} but the dashboard sent v${payload && payload.v}: reload the page.`,
    );
    return false;
  }

  _clock(t) {
    if (typeof t === "number") this.serverOffsetMs = t * 1000 - epochMs();
  }

  _onSnapshot(payload) {
    if (!this._speaks(payload) || !this.replay.accepts(payload)) return;
    this._tookReplay(payload);
    const fleet = this.fleet;
    fleet.staleAfterS = payload.stale_after_s || fleet.staleAfterS;
    fleet.replace(payload.ids, decodeRecords(payload.data, payload.t0), payload.seq, performance.now());
    this.resyncAsked = false;
    this._gotFrame();
    this._refreshPanel();
  }

  _onPositions(payload) {
    if (!this._speaks(payload) || !this.replay.accepts(payload)) return;
    const batch = decodeRecords(payload.data, payload.t0);
    const live = !payload.replay; // a replayed fix's age says nothing of the pipeline's latency
    const missed = this.fleet.takeFrame(payload.seq, payload.ids, payload.gone, batch, performance.now(), live);
    if (missed === null) return; // before a snapshot, or already in it
    this._tookReplay(payload);
    if (missed && live && !this.resyncAsked) {
      this.resyncAsked = true; // frames were missed: ask for the whole fleet once
      this.socket.emit("resync");
    }
    this._gotFrame();
  }

  _onStats(payload) {
    if (!this._speaks(payload)) return;
    if (!this.replay.active) this._clock(payload.t); // the stats stay live; the clock follows the replay
    this.panel.showStats(payload);
  }

  // Live riders when live; while replaying, the riders of this seek's replay (the server replays them too).
  _onRiders(payload) {
    if (!this._speaks(payload) || !this.replay.accepts(payload)) return;
    if (!payload.replay) this._clock(payload.t);
    this.riders.replace(payload);
    this.panel.showRiders(payload);
    if (this.riderCard.open) this._refreshRiderCard();
    document.body.dataset.riders = String(this.riders.list.length);
  }

  // Zone events (live, also while the map replays) and the last hour's counts per zone.
  _onZoneAlerts(payload) {
    if (!this._speaks(payload)) return;
    this.alerts.update(payload);
    this.zones.setCounters(this.alerts.counters);
  }

  // A click in the alert feed: select the driver and fly to it, as the search does; a driver the map no longer
  // holds is shown where the event happened.
  _pickAlert(event) {
    if (this.select(event.driver_id, true)) return;
    if (Number.isFinite(event.latitude) && Number.isFinite(event.longitude)) {
      const zoom = Math.max(this.map.getZoom(), FOLLOW_ZOOM);
      this.map.setView([event.latitude, event.longitude], zoom, { animate: !this.lessMotion });
    }
  }

  // A frame's clock: the server's time when live, the replayed time (and speed, for the glide) when replaying.
  _tookReplay(payload) {
    if (payload.replay) this.replay.took(payload.replay, performance.now());
    else this._clock(payload.t);
    this.fleet.timeScale = payload.replay ? payload.replay.speed : 1;
  }

  // Replay started, moved, paused or ended: the time bar, the badge, and the riders of the other time
  // cleared until the riders of this one arrive (with the replay's first snapshot, or live's).
  _replayChanged() {
    this.timebar.update();
    this._showConnection();
    const mode = `${this.replay.mode}:${this.replay.id}`;
    if (mode !== this.ridersMode) {
      this.ridersMode = mode;
      this.riders.replace({ riders: [], counts: null });
      this.panel.showRiders({ counts: {} });
      if (this.riderCard.open) this.deselectRider();
    }
    document.body.dataset.replay = this.replay.mode;
    document.getElementById("subtitle-mode").textContent = this.replay.active ? "replaying" : "live";
    if (this.track) this.track.follow(this.replay.now(performance.now()));
    if (this.density) this.density.setReplaying(this.replay.active);
    this.redraw = true;
  }

  _gotFrame() {
    this.lastFrameAt = performance.now();
    this._showConnection();
    if (!this.fitted && !this.userMoved && this.fleet.count > 0) this._fitFleet();
  }

  _showConnection() {
    if (!this.connected || this.unsupported) return;
    if (this.replay && this.replay.active) {
      this.panel.setConnection("replay", "replaying the past for this page only; Live returns to the live map");
      this.panel.showBanner("");
      return;
    }
    const silent = performance.now() - this.lastFrameAt;
    if (silent > STALE_CONNECTION_MS) {
      this.panel.setConnection("stale", `connected, but no new positions for ${Math.round(silent / 1000)} s`);
    } else {
      this.panel.setConnection("live", "connected: positions are arriving");
    }
    this.panel.showBanner("");
  }

  // --- drawing -----------------------------------------------------------------------------

  _frame(now) {
    const started = performance.now();
    requestAnimationFrame(this._frame);
    if (this.lessMotion && !this._drawDue(now)) {
      this.frameRate.tick(performance.now() - started);
      return;
    }
    this.lastDrawAt = now;
    this.redraw = false;
    const slot = this.selectedId === null ? -1 : this.fleet.slotOf(this.selectedId) ?? -1;
    if (this.followId !== null && !this.flying && slot >= 0) this._keepInView(slot, now);
    this.layer.highlight = slot;
    this.layer.draw(now);
    const drawnAt = epochMs();
    const latency = this.latency;
    this.fleet.drainPending((ts) => latency.add(drawnAt - ts * 1000));
    this.frameRate.tick(performance.now() - started);
  }

  // With reduced motion: once a second, or at once when the map moved or the page asked (a selection, a theme).
  _drawDue(now) {
    return this.redraw || this.layer.moved || this.flying || now - this.lastDrawAt >= REDUCED_MOTION_FRAME_MS;
  }

  _motionChanged(less) {
    this.lessMotion = less;
    this.fleet.glide = !less;
    this.redraw = true;
  }

  _themeChanged() {
    const palette = this.theme.palette;
    this.layer.setPalette(palette);
    this.riderPainter.setPalette(palette);
    if (this.trail) this.trail.setStyle({ color: palette.trail });
    this.zones.setTheme();
    this.density.setTheme();
    // folium's grid reads its line colours from page.css when it draws a tile: draw the tiles again.
    this.map.eachLayer((layer) => {
      if (layer instanceof L.GridLayer && layer.options.className === "grid-background") layer.redraw();
    });
    this.timebar.draw();
    this.redraw = true;
  }

  _everySecond() {
    this._showConnection();
    this.timebar.update();
    this.track.follow(this.replay.now(performance.now()));
    this.panel.showMeters(this.latency.take(), this.frameRate.take(performance.now()));
    this._refreshPanel();
    const riders = this.riders.counts;
    if (this.fleet.started) this.panel.announce(this.counts, riders ? riders.waiting ?? 0 : null, performance.now());
    if (this.card.open) this._refreshCard();
    if (this.riderCard.open) this._refreshRiderCard();
    document.body.dataset.drivers = String(this.fleet.count);
    document.body.dataset.drawn = String(this.layer.drawn);
  }

  // Stale marks, counts and the drivers list, from the fleet as this page holds it.
  _refreshPanel() {
    const serverNow = this.serverNowS();
    this.counts = this.fleet.markStale(serverNow);
    this.panel.showCounts(this.counts);
    this._listDrivers();
  }

  _listDrivers() {
    this.panel.showDrivers(this.fleet, this.serverNowS(), this.panel.searchInput.value, (id) => this.select(id, true));
  }

  _fitFleet() {
    const fleet = this.fleet;
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    for (let s = 0; s < fleet.count; s += 1) {
      minX = Math.min(minX, fleet.bx[s]);
      maxX = Math.max(maxX, fleet.bx[s]);
      minY = Math.min(minY, fleet.by[s]);
      maxY = Math.max(maxY, fleet.by[s]);
    }
    const bounds = L.latLngBounds([latitudeOf(maxY), longitudeOf(minX)], [latitudeOf(minY), longitudeOf(maxX)]);
    const covered = this.panel.collapsed ? 0 : this.panel.root.offsetWidth + 16;
    const panelWidth = this.layout.bottomSheet ? 0 : covered;
    this.map.fitBounds(bounds, {
      paddingTopLeft: [40, 40],
      paddingBottomRight: [40 + panelWidth, 40 + this.layout.sheetHeight],
      maxZoom: FIT_MAX_ZOOM,
      animate: false,
    });
    this.fitted = true;
  }

  // --- selection, search and follow --------------------------------------------------------

  /** Select a driver by id: ring, details card and trail; with `follow`, fly to it and follow it. */
  select(driverId, follow) {
    const slot = this.fleet.slotOf(driverId);
    if (slot === undefined) {
      this.panel.sayNoDriver(driverId);
      return false;
    }
    this.panel.say("");
    if (this.riderCard.open) this.deselectRider();
    this.selectedId = driverId;
    this.redraw = true;
    this.card.show(driverId);
    if (this.track.driverId !== driverId) this.track.forDriver(driverId);
    this._refreshCard();
    if (follow) this._follow(driverId, slot);
    return true;
  }

  deselect() {
    this.selectedId = null;
    this.redraw = true;
    this.card.hide();
    this.track.forDriver(null);
    this._unfollow();
    if (this.trail) {
      this.trail.remove();
      this.trail = null;
    }
  }

  /** Select a ride request by id: a ring around its pin and its card. */
  selectRider(requestId) {
    if (this.card.open) this.deselect();
    this.riderPainter.highlight = requestId;
    this.redraw = true;
    this.riderCard.show(requestId);
    this._refreshRiderCard();
  }

  deselectRider() {
    this.riderPainter.highlight = null;
    this.redraw = true;
    this.riderCard.hide();
  }

  _refreshRiderCard() {
    this.riderCard.fill(this.riders.get(this.riderCard.requestId), this.serverNowS());
  }

  _follow(driverId, slot) {
    this.followId = driverId;
    this.panel.showFollowing(driverId);
    const here = this._here;
    this.fleet.positionAt(slot, performance.now(), here);
    const target = [latitudeOf(here[1]), longitudeOf(here[0])];
    const zoom = Math.max(this.map.getZoom(), FOLLOW_ZOOM);
    if (this.lessMotion) {
      this.map.setView(target, zoom, { animate: false }); // no flight: the map jumps there
      this.redraw = true;
      return;
    }
    this.flying = true;
    this.map.once("moveend", () => {
      this.flying = false;
    });
    this.map.flyTo(target, zoom, { duration: 1.0 });
  }

  // A track just drawn: show all of it, clear of the card and the panel (the reader asked for the past: no following).
  _fitTrack(bounds) {
    this._unfollow();
    const card = this.layout.compact ? 0 : this.card.root.offsetWidth + 16;
    const panel = this.layout.bottomSheet || this.panel.collapsed ? 0 : this.panel.root.offsetWidth + 16;
    this.map.fitBounds(bounds, {
      paddingTopLeft: [40 + card, 40],
      paddingBottomRight: [40 + panel, 40 + this.layout.sheetHeight],
      maxZoom: 17,
      animate: !this.lessMotion,
    });
  }

  _unfollow() {
    this.followId = null;
    this.flying = false;
    this.panel.showFollowing(null);
  }

  // Pan so that the followed driver stays at the centre of the map (whole pixels, no animation); on a
  // phone, at the centre of what the bottom sheet leaves of it.
  _keepInView(slot, now) {
    const map = this.map;
    if (map._animatingZoom) return;
    const here = this._here;
    this.fleet.positionAt(slot, now, here);
    const point = map.latLngToContainerPoint([latitudeOf(here[1]), longitudeOf(here[0])]);
    const center = map.getSize().subtract([0, this.layout.sheetHeight]).divideBy(2);
    const dx = Math.round(point.x - center.x);
    const dy = Math.round(point.y - center.y);
    if (dx || dy) map.panBy([dx, dy], { animate: false, noMoveStart: true });
  }

  async _refreshCard() {
    const driverId = this.card.driverId;
    if (driverId === null) return;
    if (this.replay.active) {
      this._fillCardFromReplay(driverId);
      return;
    }
    let details = null;
    try {
      // Same origin: the token's cookie, when there is one, goes with the request.
      const response = await fetch(`api/drivers/${encodeURIComponent(driverId)}`, { cache: "no-store" });
      if (response.status === 404) {
        if (this.card.driverId === driverId) this.card.note("The dashboard no longer holds this driver.");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      details = await response.json();
    } catch (error) {
      if (this.card.driverId === driverId) this.card.note(`Details unavailable: ${error.message}`);
      return;
    }
    if (this.card.driverId !== driverId) return; // another driver was selected meanwhile
    this.card.fill(details);
    const slot = this.fleet.slotOf(driverId);
    this.card.age(this.serverNowS(), slot === undefined ? null : this.fleet.fixTs[slot]);
    this._drawTrail(details.trail || []);
  }

  // While replaying, the dashboard's API knows only the present: the card shows the replayed record.
  _fillCardFromReplay(driverId) {
    const slot = this.fleet.slotOf(driverId);
    if (slot === undefined) {
      this.card.note("This driver is not on the map at the replayed time.");
      return;
    }
    const fleet = this.fleet;
    this.card.fill({
      status: STATUS_NAMES[fleet.status[slot]],
      stale: fleet.stale[slot] === 1,
      speed_kmh: speedKmh(fleet.speed[slot]),
      heading: headingDegrees(fleet.heading[slot]),
      partition: null,
      offset: null,
      timestamp: fleet.fixTs[slot],
    });
    this.card.age(this.serverNowS(), fleet.fixTs[slot]);
    this.card.note("Replayed: partition and offset are shown live only.");
    if (this.trail) {
      this.trail.remove();
      this.trail = null;
    }
  }

  _drawTrail(points) {
    const latlngs = points.map((p) => [p[0], p[1]]);
    if (this.trail) this.trail.setLatLngs(latlngs);
    else this.trail = L.polyline(latlngs, { ...TRAIL_STYLE, color: this.theme.palette.trail }).addTo(this.map);
  }

  _statusOf(driverId) {
    const slot = this.fleet.slotOf(driverId);
    return slot === undefined ? "unknown" : STATUS_NAMES[this.fleet.status[slot]];
  }

  // Enter in the search box without a match picked: say why nothing was chosen.
  _searchFailed(text, total) {
    if (total === 0) this.panel.sayNoDriver(text);
    else {
      this.panel.say(`${total.toLocaleString("en-US")} drivers match: choose one with the arrow keys, or type more.`);
      this.search.update();
    }
  }

  // --- wiring --------------------------------------------------------------------------------

  _bindMap() {
    const map = this.map;
    map.on("dragstart", () => {
      this.userMoved = true;
      if (this.followId !== null) this._unfollow();
    });
    map.on("zoomstart", () => {
      if (!this.flying && this.followId === null) this.userMoved = true;
    });
    map.on("keydown", (ev) => {
      if (ev.originalEvent.key.startsWith("Arrow") && this.followId !== null) this._unfollow();
    });
    map.on("click", (ev) => {
      if (this.zones.drawing) return; // the click places a corner of a zone
      const rider = this.riderPainter.riderAt(ev.containerPoint); // pins are drawn over the drivers
      const slot = rider === null ? this.layer.slotAt(ev.containerPoint) : -1;
      const onTrack = rider === null && slot < 0 ? this.track.pointNear(ev.containerPoint) : -1; // its time
      if (rider !== null) this.selectRider(rider);
      else if (slot >= 0) this.select(this.fleet.ids[slot], false);
      else if (onTrack >= 0) this.track.showTime(onTrack);
      else {
        if (this.card.open) this.deselect();
        if (this.riderCard.open) this.deselectRider();
      }
    });
    map.on("mousemove", (ev) => {
      const over = this.riderPainter.riderAt(ev.containerPoint) !== null || this.layer.slotAt(ev.containerPoint) >= 0;
      map.getContainer().classList.toggle("over-driver", over);
    });
  }

  // The map's container takes the focus (Leaflet's keys): give it a name that says what it does.
  _nameMap() {
    const container = this.map.getContainer();
    container.setAttribute("role", "region");
    container.setAttribute("aria-roledescription", "map");
    container.setAttribute("aria-label", "Fleet map: arrow keys pan, plus and minus zoom");
  }

  _bindPanel() {
    const panel = this.panel;
    panel.searchInput.addEventListener("input", () => {
      panel.say("");
      this._listDrivers();
    });
    panel.followingStop.addEventListener("click", () => {
      this._unfollow();
      // The button goes away with the line it stands in: keep the keyboard in the details, where f follows again.
      if (this.card.open) this.card.followButton.focus();
    });
    panel.sortButton.addEventListener("click", () => {
      panel.toggleOrder();
      this._listDrivers();
    });
    panel.toggle.addEventListener("click", () => {
      if (!panel.collapsed) this._listDrivers();
    });
    this.card.closeButton.addEventListener("click", () => this.deselect());
    this.riderCard.closeButton.addEventListener("click", () => this.deselectRider());
    this.riderCard.driverButton.addEventListener("click", () => {
      const ride = this.riders.get(this.riderCard.requestId);
      if (ride && ride.driver_id) this.select(ride.driver_id, false);
    });
    this.card.followButton.addEventListener("click", () => {
      const slot = this.fleet.slotOf(this.card.driverId);
      if (slot !== undefined) this._follow(this.card.driverId, slot);
    });
  }

  // `/` search, `f` follow the selected driver, `?` the shortcuts sheet, Space replay's play/pause, left and
  // right arrows replay's steps (single keys, which the sheet can turn off), Escape closes what is open.
  // Arrow keys belong to the search's matches, the drivers list (panel.js), the time bar's scrubber and the
  // map, wherever the focus is; replay's steps take them only when none of those has the focus.
  _bindKeys() {
    document.addEventListener("keydown", (ev) => {
      if (this.shortcuts.open || ev.defaultPrevented) return; // the sheet is modal and closes itself on Escape
      const typing = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement;
      const plain = !ev.ctrlKey && !ev.metaKey && !ev.altKey;
      const single = plain && !typing && this.shortcuts.enabled;
      if (ev.key === "/" && single) {
        ev.preventDefault();
        if (this.panel.collapsed) this.panel.setCollapsed(false);
        this.panel.searchInput.focus();
        this.panel.searchInput.select();
      } else if (ev.key === "?" && single) {
        ev.preventDefault();
        this.shortcuts.show();
      } else if ((ev.key === "f" || ev.key === "F") && single && !ev.shiftKey) {
        this._followSelected();
      } else if (ev.key === " " && single && !this._interactive(ev.target)) {
        ev.preventDefault();
        this.replay.togglePlay(performance.now());
      } else if ((ev.key === "ArrowLeft" || ev.key === "ArrowRight") && single && this._unfocused(ev.target)) {
        ev.preventDefault();
        const seconds = ev.shiftKey ? STEPS_S.large : STEPS_S.small;
        this.replay.step(ev.key === "ArrowLeft" ? -seconds : seconds, performance.now());
      } else if (ev.key === "Escape" && (this.zones.drawing || this.zones.form.contains(ev.target))) {
        this.zones.escape(); // stop drawing, or drop the shape that waits for a name
      } else if (ev.key === "Escape") {
        this._escape(ev.target, typing);
      }
    });
  }

  // Space belongs to what has the focus when it is a control (a button, a box, the map's keyboard); arrows too.
  _interactive(target) {
    return target instanceof Element && target.closest("button, input, select, textarea, a, summary, .leaflet-container") !== null;
  }

  _unfocused(target) {
    return !this._interactive(target) && !this.panel.list.contains(target);
  }

  _followSelected() {
    const slot = this.selectedId === null ? undefined : this.fleet.slotOf(this.selectedId);
    if (slot !== undefined) this._follow(this.selectedId, slot);
    else this.panel.say("Choose a driver first (press / to find one), then f follows it.");
  }

  // Escape closes the details; the keyboard then goes back to the map, unless it was typing (it just leaves the box).
  _escape(target, typing) {
    const inCard = this.card.root.contains(target) || this.riderCard.root.contains(target);
    if (this.card.open) this.deselect();
    if (this.riderCard.open) this.deselectRider();
    if (typing) target.blur();
    else if (inCard) this.map.getContainer().focus({ preventScroll: true });
  }

  /** For tests and benchmarks: what is drawn where, without reading pixels. */
  debugHook() {
    return Object.freeze({
      drivers: () => this.fleet.count,
      drawn: () => this.layer.drawn,
      fps: () => this.frameRate.value,
      /** Milliseconds our code spent per frame over the last second: { meanMs, maxMs }. */
      frameCost: () => this.frameRate.cost,
      connection: () => document.body.dataset.connection,
      following: () => this.followId,
      flying: () => this.flying,
      selected: () => this.selectedId,
      trailPoints: () => (this.trail ? this.trail.getLatLngs().length : 0),
      /** The selected driver's track: points held, coloured runs drawn, container pixels of point i. */
      trackPoints: () => this.track.points.length,
      trackLines: () => this.track.lines,
      trackPointAt: (i) => this.track.pointAt(i),
      /** Whether the track's ring marks the replayed time on the line. */
      trackCursor: () => this.track.cursorShown,
      /** Container pixels where a driver was drawn in the last frame, or null. */
      drawnAt: (driverId) => {
        const slot = this.fleet.slotOf(driverId);
        return slot === undefined ? null : this.layer.drawnAt(slot);
      },
      ids: () => this.fleet.ids.slice(),
      /** Riders held (every ride of the latest event), pins and lines drawn in the last frame. */
      riders: () => this.riders.list.length,
      ridersDrawn: () => this.riderPainter.drawn,
      riderLines: () => this.riderPainter.lines,
      /** Container pixels where a rider's pick-up point was drawn in the last frame, or null. */
      riderAt: (requestId) => this.riderPainter.drawnAt(requestId),
      /** Container pixels of every rider's pick-up point drawn in the last frame. */
      riderPoints: () => this.riderPainter.drawnPoints(),
      /** "light" or "dark", and the canvas colours of that theme. */
      theme: () => this.theme.name,
      palette: () => ({ ...this.theme.palette }),
      /** Whether the fleet glides (false with prefers-reduced-motion). */
      gliding: () => this.fleet.glide,
      /** Where the panel is: "bottom" (a phone's sheet), "side"; and whether the legend and cards are in it. */
      layout: () => ({ sheet: this.layout.bottomSheet ? "bottom" : "side", compact: this.layout.compact }),
      /** Zones held and the names on the map; the alert feed and toast; the density layer. */
      zones: () => this.zones.debug(),
      alerts: () => this.alerts.debug(),
      density: () => this.density.debug(),
      /** "live", "seeking" or "replay"; the replayed epoch seconds (null when live), speed and whether it plays. */
      replay: () => ({
        mode: this.replay.mode,
        t: this.replay.now(performance.now()),
        speed: this.replay.speed,
        playing: this.replay.playing,
      }),
    });
  }
}
