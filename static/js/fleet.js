// The browser's copy of the fleet: one slot per driver in parallel typed arrays, and the glide
// between two fixes. Positions are Web Mercator "world" coordinates in [0, 1] (what Leaflet's
// EPSG:3857 projects to before scaling by 256 * 2^zoom), so the drawing loop does one multiply
// and one subtract per driver and per axis.

import { STATUS } from "./protocol.js";

// A driver glides from where it is drawn to its newest fix over the time between its last two
// fixes, then keeps going at its last speed for at most this long (a fix a little late does not
// stop it), and then stops: a silent driver never drifts away.
export const EXTRAPOLATE_MS = 1000;
// Fixes further apart than this (a driver back after a break) jump instead of gliding.
export const MAX_GLIDE_MS = 5000;
const MIN_GLIDE_MS = 50;
const MAX_LATITUDE = 85.0511287798;
const INITIAL_CAPACITY = 1024;
const PENDING_CAPACITY = 65536;

export function worldX(lon) {
  return 0.5 + lon / 360;
}

export function worldY(lat) {
  const clamped = Math.max(-MAX_LATITUDE, Math.min(MAX_LATITUDE, lat));
  const s = Math.sin((clamped * Math.PI) / 180);
  return 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
}

export function longitudeOf(x) {
  return (x - 0.5) * 360;
}

export function latitudeOf(y) {
  return (Math.atan(Math.sinh((0.5 - y) * 2 * Math.PI)) * 180) / Math.PI;
}

export class Fleet {
  constructor() {
    this.count = 0; // slots in use: 0 .. count-1
    this.names = new Map(); // idx -> driver id, as announced in `ids`
    this.slotByIdx = new Map();
    this.slotById = new Map();
    this.ids = []; // slot -> driver id
    this.seq = null;
    this.staleAfterS = 30;
    this.unannounced = 0; // records whose idx came without an id (a missed frame: resync)
    this.version = 0; // +1 whenever slots are added or removed
    // Off (prefers-reduced-motion), a driver jumps to each new fix instead of gliding to it.
    this.glide = true;
    // Replayed seconds per real second: a replay at 4x glides between two fixes a second apart in 250 ms.
    this.timeScale = 1;
    // Fix timestamps not drawn yet, for the fix-to-drawn latency.
    this.pending = new Float64Array(PENDING_CAPACITY);
    this.pendingCount = 0;
    this._allocate(INITIAL_CAPACITY);
  }

  /** A `snapshot` event: replace everything, keeping drawn positions of drivers already on the map. */
  replace(ids, batch, seq, now) {
    const carried = new Map();
    const here = new Float64Array(2);
    for (let s = 0; s < this.count; s += 1) {
      this.positionAt(s, now, here);
      carried.set(this.ids[s], [here[0], here[1], this.fixTs[s], this.vx[s], this.vy[s]]);
    }
    this.names.clear();
    this.slotByIdx.clear();
    this.slotById.clear();
    this.ids.length = 0;
    this.count = 0;
    this.version += 1;
    this.announce(ids);
    this.apply(batch, now, carried, false);
    this.seq = seq;
  }

  /**
   * A `positions` event: its ids, gone and records, in that order. Returns null for a frame to ignore
   * (before the first snapshot, or one the snapshot already holds), else whether frames were missed
   * (its seq is not the next, or a record's driver was never announced): then ask for a `resync`.
   */
  takeFrame(seq, ids, gone, batch, now, measure = true) {
    if (this.seq === null || seq <= this.seq) return null;
    const missed = seq !== this.seq + 1;
    this.seq = seq;
    this.announce(ids);
    this.remove(gone);
    const unannounced = this.unannounced;
    this.apply(batch, now, null, measure);
    return missed || this.unannounced !== unannounced;
  }

  /** Whether a snapshot has been taken: before it, the fleet is not the server's yet. */
  get started() {
    return this.seq !== null;
  }

  /** The `ids` of an event: driver ids for the idx values they are sent as from now on. */
  announce(ids) {
    for (const [idx, id] of ids) this.names.set(idx, String(id));
  }

  /** The `gone` of an event: drivers the server dropped. */
  remove(gone) {
    for (const idx of gone) {
      this.names.delete(idx);
      const slot = this.slotByIdx.get(idx);
      if (slot !== undefined) this._free(slot);
    }
  }

  /**
   * Take decoded records; older fixes than the one held are ignored (they repeat or arrive late).
   * With `measure`, their timestamps count for the fix-to-drawn latency (a snapshot's do not: they
   * are the state at connect time, not fixes arriving).
   */
  apply(batch, now, carried = null, measure = true) {
    for (let i = 0; i < batch.count; i += 1) {
      const idx = batch.idx[i];
      let slot = this.slotByIdx.get(idx);
      const x = worldX(batch.lon[i]);
      const y = worldY(batch.lat[i]);
      const ts = batch.ts[i];
      if (slot === undefined) {
        const id = this.names.get(idx);
        if (id === undefined) {
          this.unannounced += 1;
          continue;
        }
        slot = this._add(idx, id);
        const before = carried && carried.get(id);
        if (before) this._carry(slot, before, x, y, ts, now);
        else this._place(slot, x, y);
      } else if (ts <= this.fixTs[slot]) {
        continue;
      } else {
        this._glide(slot, x, y, ts, now);
      }
      this.fixTs[slot] = ts;
      this.heading[slot] = batch.heading[i];
      this.speed[slot] = batch.speed[i];
      this.status[slot] = batch.status[i] <= STATUS.offline ? batch.status[i] : STATUS.unknown;
      if (measure && this.pendingCount < PENDING_CAPACITY) this.pending[this.pendingCount++] = ts;
    }
  }

  /**
   * Mark drivers whose newest fix is older than `staleAfterS` at server time `serverNowS`, and
   * count drivers by status (stale ones included, as the server counts them).
   */
  markStale(serverNowS) {
    const cutoff = serverNowS - this.staleAfterS;
    const byStatus = [0, 0, 0, 0];
    let stale = 0;
    for (let s = 0; s < this.count; s += 1) {
      const old = this.fixTs[s] < cutoff ? 1 : 0;
      this.stale[s] = old;
      stale += old;
      byStatus[this.status[s]] += 1;
    }
    return {
      total: this.count,
      unknown: byStatus[STATUS.unknown],
      available: byStatus[STATUS.available],
      on_trip: byStatus[STATUS.on_trip],
      offline: byStatus[STATUS.offline],
      stale,
    };
  }

  /** Where slot `s` is drawn at `now` (performance.now() ms), written to out[0], out[1]. */
  positionAt(s, now, out) {
    const elapsed = now - this.t1[s];
    const duration = this.dur[s];
    if (elapsed < duration) {
      const f = elapsed / duration;
      out[0] = this.ax[s] + (this.bx[s] - this.ax[s]) * f;
      out[1] = this.ay[s] + (this.by[s] - this.ay[s]) * f;
    } else {
      const ahead = Math.min(elapsed - duration, EXTRAPOLATE_MS);
      out[0] = this.bx[s] + this.vx[s] * ahead;
      out[1] = this.by[s] + this.vy[s] * ahead;
    }
  }

  /**
   * Every slot's position at `now` in one pass over the typed arrays (positionAt for all of them),
   * scaled and shifted: outX[s] = x * scale - left, outY[s] = y * scale - top.
   */
  positionsAt(now, scale, left, top, outX, outY) {
    const { ax, ay, bx, by, vx, vy, t1, dur } = this;
    for (let s = 0, n = this.count; s < n; s += 1) {
      const elapsed = now - t1[s];
      const duration = dur[s];
      let x;
      let y;
      if (elapsed < duration) {
        const f = elapsed / duration;
        x = ax[s] + (bx[s] - ax[s]) * f;
        y = ay[s] + (by[s] - ay[s]) * f;
      } else {
        const ahead = elapsed - duration < EXTRAPOLATE_MS ? elapsed - duration : EXTRAPOLATE_MS;
        x = bx[s] + vx[s] * ahead;
        y = by[s] + vy[s] * ahead;
      }
      outX[s] = x * scale - left;
      outY[s] = y * scale - top;
    }
  }

  /** Fix timestamps taken since the last call, handed to `each(ts)`. */
  drainPending(each) {
    for (let i = 0; i < this.pendingCount; i += 1) each(this.pending[i]);
    this.pendingCount = 0;
  }

  slotOf(driverId) {
    return this.slotById.get(driverId);
  }

  _place(s, x, y) {
    this.ax[s] = this.bx[s] = x;
    this.ay[s] = this.by[s] = y;
    this.vx[s] = this.vy[s] = 0;
    this.t1[s] = 0;
    this.dur[s] = 0;
  }

  _glide(s, x, y, ts, now) {
    const here = this._here;
    this.positionAt(s, now, here);
    const intervalMs = ((ts - this.fixTs[s]) * 1000) / this.timeScale;
    if (intervalMs > MAX_GLIDE_MS || !this.glide) {
      this._place(s, x, y);
      return;
    }
    this.vx[s] = (x - this.bx[s]) / intervalMs;
    this.vy[s] = (y - this.by[s]) / intervalMs;
    this.ax[s] = here[0];
    this.ay[s] = here[1];
    this.bx[s] = x;
    this.by[s] = y;
    this.t1[s] = now;
    this.dur[s] = Math.max(intervalMs, MIN_GLIDE_MS);
  }

  // A driver from before a snapshot (a resync or a reconnect): glide on from where it was drawn.
  _carry(s, [hx, hy, ts, vx, vy], x, y, fixTs, now) {
    if (!this.glide) {
      this._place(s, x, y);
      return;
    }
    this.ax[s] = hx;
    this.ay[s] = hy;
    this.bx[s] = x;
    this.by[s] = y;
    this.t1[s] = now;
    this.vx[s] = fixTs > ts ? vx : 0;
    this.vy[s] = fixTs > ts ? vy : 0;
    const interval = ((fixTs - ts) * 1000) / this.timeScale;
    this.dur[s] = interval > 0 && interval <= MAX_GLIDE_MS ? interval : EXTRAPOLATE_MS;
  }

  _add(idx, id) {
    if (this.count === this.capacity) this._allocate(this.capacity * 2);
    const s = this.count;
    this.count += 1;
    this.idx[s] = idx;
    this.ids[s] = id;
    this.stale[s] = 0;
    this.fixTs[s] = -Infinity;
    this.slotByIdx.set(idx, s);
    this.slotById.set(id, s);
    this.version += 1;
    return s;
  }

  // Move the last slot into the freed one so that slots stay dense for the drawing loop.
  _free(s) {
    const last = this.count - 1;
    const id = this.ids[s];
    this.slotByIdx.delete(this.idx[s]);
    if (this.slotById.get(id) === s) this.slotById.delete(id);
    if (s !== last) {
      for (const array of this._arrays) array[s] = array[last];
      this.ids[s] = this.ids[last];
      this.slotByIdx.set(this.idx[s], s);
      this.slotById.set(this.ids[s], s);
    }
    this.ids.length = last;
    this.count = last;
    this.version += 1;
  }

  _allocate(capacity) {
    const grow = (Type, old) => {
      const array = new Type(capacity);
      if (old) array.set(old.subarray(0, this.count));
      return array;
    };
    this.idx = grow(Uint32Array, this.idx);
    this.ax = grow(Float64Array, this.ax);
    this.ay = grow(Float64Array, this.ay);
    this.bx = grow(Float64Array, this.bx);
    this.by = grow(Float64Array, this.by);
    this.vx = grow(Float64Array, this.vx);
    this.vy = grow(Float64Array, this.vy);
    this.t1 = grow(Float64Array, this.t1);
    this.dur = grow(Float64Array, this.dur);
    this.fixTs = grow(Float64Array, this.fixTs);
    this.heading = grow(Uint16Array, this.heading);
    this.speed = grow(Uint16Array, this.speed);
    this.status = grow(Uint8Array, this.status);
    this.stale = grow(Uint8Array, this.stale);
    this._arrays = [
      this.idx, this.ax, this.ay, this.bx, this.by, this.vx, this.vy, this.t1, this.dur,
      this.fixTs, this.heading, this.speed, this.status, this.stale,
    ];
    this._here = new Float64Array(2);
    this.capacity = capacity;
  }
}
