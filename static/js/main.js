// The live map page. folium's script creates the Leaflet map, then its FleetHook element calls
// start(map) here: we connect to the dashboard over Socket.IO, keep the fleet in typed arrays and
// the riders in a small list, draw both every animation frame on one canvas, and keep the panel
// and the details cards current.

import { io } from "socket.io-client";
import { Fleet, latitudeOf, longitudeOf } from "./fleet.js";
import { FleetLayer } from "./layer.js";
import { FrameRate, LatencyWindow } from "./meters.js";
import { Card, Panel, RiderCard } from "./panel.js";
import { VERSION, decodeRecords } from "./protocol.js";
import { RiderPainter, Riders } from "./riders.js";

// No frame for this long while connected: the badge says "stale".
const STALE_CONNECTION_MS = 5000;
const SECOND_MS = 1000;
const FOLLOW_ZOOM = 15;
const FIT_MAX_ZOOM = 15;
const TRAIL_STYLE = { color: "#0f172a", weight: 4, opacity: 0.6, interactive: false, lineJoin: "round", lineCap: "round" };

export function start(map) {
  const page = new LivePage(map);
  window.fleetDebug = page.debugHook();
  return page;
}

const epochMs = () => performance.timeOrigin + performance.now();

class LivePage {
  constructor(map) {
    this.map = map;
    this.fleet = new Fleet();
    this.layer = new FleetLayer(this.fleet).addTo(map);
    this.riders = new Riders();
    this.riderPainter = new RiderPainter(this.riders, this.fleet);
    this.layer.overlays.push(this.riderPainter);
    this.panel = new Panel();
    this.card = new Card();
    this.riderCard = new RiderCard();
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
    this._bindMap();
    this._bindPanel();
    this._bindKeys();
    this._frame = this._frame.bind(this);
    requestAnimationFrame(this._frame);
    setInterval(() => this._everySecond(), SECOND_MS);
  }

  serverNowS() {
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
    if (!this._speaks(payload)) return;
    this._clock(payload.t);
    const fleet = this.fleet;
    fleet.staleAfterS = payload.stale_after_s || fleet.staleAfterS;
    fleet.replace(payload.ids, decodeRecords(payload.data, payload.t0), payload.seq, performance.now());
    this.resyncAsked = false;
    this._gotFrame();
    this._refreshPanel();
  }

  _onPositions(payload) {
    if (!this._speaks(payload)) return;
    const fleet = this.fleet;
    if (fleet.seq === null || payload.seq <= fleet.seq) return; // before a snapshot, or already in it
    this._clock(payload.t);
    const missed = payload.seq !== fleet.seq + 1;
    fleet.seq = payload.seq;
    fleet.announce(payload.ids);
    fleet.remove(payload.gone);
    const unannounced = fleet.unannounced;
    fleet.apply(decodeRecords(payload.data, payload.t0), performance.now());
    if ((missed || fleet.unannounced !== unannounced) && !this.resyncAsked) {
      this.resyncAsked = true; // frames were missed: ask for the whole fleet once
      this.socket.emit("resync");
    }
    this._gotFrame();
  }

  _onStats(payload) {
    if (!this._speaks(payload)) return;
    this._clock(payload.t);
    this.panel.showStats(payload);
  }

  _onRiders(payload) {
    if (!this._speaks(payload)) return;
    this._clock(payload.t);
    this.riders.replace(payload);
    this.panel.showRiders(payload);
    if (this.riderCard.open) this._refreshRiderCard();
    document.body.dataset.riders = String(this.riders.list.length);
  }

  _gotFrame() {
    this.lastFrameAt = performance.now();
    this._showConnection();
    if (!this.fitted && !this.userMoved && this.fleet.count > 0) this._fitFleet();
  }

  _showConnection() {
    if (!this.connected || this.unsupported) return;
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
    const slot = this.selectedId === null ? -1 : this.fleet.slotOf(this.selectedId) ?? -1;
    if (this.followId !== null && !this.flying && slot >= 0) this._keepInView(slot, now);
    this.layer.highlight = slot;
    this.layer.draw(now);
    const drawnAt = epochMs();
    const latency = this.latency;
    this.fleet.drainPending((ts) => latency.add(drawnAt - ts * 1000));
    this.frameRate.tick(performance.now() - started);
  }

  _everySecond() {
    this._showConnection();
    this.panel.showMeters(this.latency.take(), this.frameRate.take(performance.now()));
    this._refreshPanel();
    if (this.card.open) this._refreshCard();
    if (this.riderCard.open) this._refreshRiderCard();
    document.body.dataset.drivers = String(this.fleet.count);
    document.body.dataset.drawn = String(this.layer.drawn);
  }

  // Stale marks, counts and the drivers list, from the fleet as this page holds it.
  _refreshPanel() {
    const serverNow = this.serverNowS();
    this.panel.showCounts(this.fleet.markStale(serverNow));
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
    const panelWidth = this._panelCoversMap() ? this.panel.root.offsetWidth + 16 : 0;
    this.map.fitBounds(bounds, {
      paddingTopLeft: [40, 40],
      paddingBottomRight: [40 + panelWidth, 40],
      maxZoom: FIT_MAX_ZOOM,
      animate: false,
    });
    this.fitted = true;
  }

  _panelCoversMap() {
    return !this.panel.collapsed && window.matchMedia("(min-width: 721px)").matches;
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
    this.card.show(driverId);
    this._refreshCard();
    if (follow) this._follow(driverId, slot);
    return true;
  }

  deselect() {
    this.selectedId = null;
    this.card.hide();
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
    this.riderCard.show(requestId);
    this._refreshRiderCard();
  }

  deselectRider() {
    this.riderPainter.highlight = null;
    this.riderCard.hide();
  }

  _refreshRiderCard() {
    this.riderCard.fill(this.riders.get(this.riderCard.requestId), this.serverNowS());
  }

  _follow(driverId, slot) {
    this.followId = driverId;
    this.flying = true;
    this.panel.showFollowing(driverId);
    const here = this._here;
    this.fleet.positionAt(slot, performance.now(), here);
    this.map.once("moveend", () => {
      this.flying = false;
    });
    this.map.flyTo([latitudeOf(here[1]), longitudeOf(here[0])], Math.max(this.map.getZoom(), FOLLOW_ZOOM), {
      duration: 1.0,
    });
  }

  _unfollow() {
    this.followId = null;
    this.flying = false;
    this.panel.showFollowing(null);
  }

  // Pan so that the followed driver stays at the centre of the map (whole pixels, no animation).
  _keepInView(slot, now) {
    const map = this.map;
    if (map._animatingZoom) return;
    const here = this._here;
    this.fleet.positionAt(slot, now, here);
    const point = map.latLngToContainerPoint([latitudeOf(here[1]), longitudeOf(here[0])]);
    const center = map.getSize().divideBy(2);
    const dx = Math.round(point.x - center.x);
    const dy = Math.round(point.y - center.y);
    if (dx || dy) map.panBy([dx, dy], { animate: false, noMoveStart: true });
  }

  async _refreshCard() {
    const driverId = this.card.driverId;
    if (driverId === null) return;
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

  _drawTrail(points) {
    const latlngs = points.map((p) => [p[0], p[1]]);
    if (this.trail) this.trail.setLatLngs(latlngs);
    else this.trail = L.polyline(latlngs, TRAIL_STYLE).addTo(this.map);
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
      const rider = this.riderPainter.riderAt(ev.containerPoint); // pins are drawn over the drivers
      const slot = rider === null ? this.layer.slotAt(ev.containerPoint) : -1;
      if (rider !== null) this.selectRider(rider);
      else if (slot >= 0) this.select(this.fleet.ids[slot], false);
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

  _bindPanel() {
    const panel = this.panel;
    panel.searchForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = panel.searchInput.value.trim();
      if (!text) return;
      const first = panel.list.querySelector("li")?.dataset.driverId;
      const id = this.fleet.slotOf(text) !== undefined ? text : first;
      if (id === undefined || !this.select(id, true)) panel.sayNoDriver(text);
    });
    panel.searchInput.addEventListener("input", () => {
      panel.say("");
      this._listDrivers();
    });
    panel.followingStop.addEventListener("click", () => this._unfollow());
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

  _bindKeys() {
    document.addEventListener("keydown", (ev) => {
      const typing = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement;
      if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
        ev.preventDefault();
        if (this.panel.collapsed) this.panel.setCollapsed(false);
        this.panel.searchInput.focus();
        this.panel.searchInput.select();
      } else if (ev.key === "Escape") {
        if (this.card.open) this.deselect();
        if (this.riderCard.open) this.deselectRider();
        if (typing) ev.target.blur();
      }
    });
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
    });
  }
}
