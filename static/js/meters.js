// What the panel measures in the browser itself: fix-to-drawn latency and frames per second.

const MAX_SAMPLES = 65536;

/** Latency samples of the current interval; `take()` returns their p50/p95 and starts a new one. */
export class LatencyWindow {
  constructor() {
    this._samples = new Float64Array(MAX_SAMPLES);
    this._count = 0;
    this._seen = 0;
  }

  add(ms) {
    // Past the buffer, keep a uniform sample of the interval (reservoir sampling).
    this._seen += 1;
    if (this._count < MAX_SAMPLES) {
      this._samples[this._count++] = ms;
      return;
    }
    const k = Math.floor(Math.random() * this._seen);
    if (k < MAX_SAMPLES) this._samples[k] = ms;
  }

  take() {
    if (this._count === 0) return null;
    const sorted = this._samples.subarray(0, this._count).sort();
    const result = { p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95), count: this._seen };
    this._count = 0;
    this._seen = 0;
    return result;
  }
}

export function percentile(sorted, q) {
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

/** Frames drawn per second over the last interval, and the time our code took per frame. */
export class FrameRate {
  constructor() {
    this._frames = 0;
    this._busyMs = 0;
    this._worstMs = 0;
    this._since = performance.now();
    this.value = null;
    this.cost = null;
  }

  tick(busyMs) {
    this._frames += 1;
    this._busyMs += busyMs;
    this._worstMs = Math.max(this._worstMs, busyMs);
  }

  take(now) {
    const elapsed = now - this._since;
    if (elapsed > 0) this.value = (this._frames * 1000) / elapsed;
    this.cost = this._frames ? { meanMs: this._busyMs / this._frames, maxMs: this._worstMs } : null;
    this._frames = 0;
    this._busyMs = 0;
    this._worstMs = 0;
    this._since = now;
    return this.value;
  }
}
