// Replay, per viewer (docs/api.md, "Replay"): the time bar in the panel, and which frames this page takes.
//
// The server replays for this browser alone once it sends `replay` {id, t, speed, playing}: the fleet as it
// was at t first (a snapshot), then frames paced by the records' timestamps at the speed, the same binary
// frames as live with a `replay` field {id, t, speed, playing}. Every seek and every play/pause/speed change
// carries a new id, and this page takes only the frames of its latest id (a frame already on its way from an
// older seek is dropped), and no live frame while it replays. `live` returns to the live stream.

const TIMELINE_URL = "api/replay/timeline";
const TIMELINE_EVERY_MS = 30000;
export const SPEEDS = Object.freeze([1, 2, 4, 16, 60]);
export const STEPS_S = Object.freeze({ small: 10, large: 60 });
// The server refuses seeks into the future; the live end is "now" minus this, so a step forward stays valid.
const LIVE_MARGIN_S = 0.5;

const byId = (id) => document.getElementById(id);
const epochS = () => (performance.timeOrigin + performance.now()) / 1000;

/** "14:05:32", or "1 Dec, 14:05:32" for another day: local time of epoch seconds. */
export function formatReplayTime(epochSeconds) {
  const date = new Date(epochSeconds * 1000);
  const time = date.toLocaleTimeString("en-GB");
  const today = new Date().toDateString() === date.toDateString();
  return today ? time : `${date.toLocaleDateString("en-GB", { day: "numeric", month: "short" })}, ${time}`;
}

/** The replayed time between two frames: where the latest frame was, then `speed` seconds a second while playing. */
export class ReplayClock {
  constructor() {
    this.t = null;
    this.at = 0;
    this.speed = 1;
    this.playing = false;
  }

  sync(replay, perfNow) {
    this.t = replay.t;
    this.at = perfNow;
    this.speed = replay.speed;
    this.playing = replay.playing;
  }

  now(perfNow) {
    if (this.t === null) return null;
    const t = this.playing ? this.t + ((perfNow - this.at) / 1000) * this.speed : this.t;
    return Math.min(t, epochS());
  }
}

/** What this page asked of the server, and which frames it takes. */
export class Replay {
  constructor(socket, onChange) {
    this.socket = socket;
    this.onChange = onChange;
    this.mode = "live"; // "live" | "seeking" (asked, no snapshot yet) | "replay"
    this.id = 0;
    this.speed = 1;
    this.playing = true;
    this.target = null; // the time asked for, until the snapshot comes
    this.clock = new ReplayClock();
    this.refusal = "";
  }

  get active() {
    return this.mode !== "live";
  }

  /** Whether to take this `snapshot` or `positions` event: live ones when live, this seek's ones when replaying. */
  accepts(payload) {
    const replay = payload.replay;
    if (this.mode === "live") return !replay;
    return Boolean(replay) && replay.id === this.id;
  }

  /** A frame of this replay arrived: its time, speed and state. */
  took(replay, perfNow) {
    const arrived = this.mode !== "replay"; // the seek's first frame: the time bar says so at once
    this.clock.sync(replay, perfNow);
    this.mode = "replay";
    this.speed = replay.speed;
    this.playing = replay.playing;
    this.target = null;
    if (arrived) this.onChange();
  }

  /** The replayed time now, or null when live. */
  now(perfNow) {
    if (this.mode === "seeking") return this.target;
    return this.mode === "replay" ? this.clock.now(perfNow) : null;
  }

  seek(t, playing = this.playing) {
    this.id += 1;
    this.mode = "seeking";
    this.target = Math.min(t, epochS() - LIVE_MARGIN_S);
    this.playing = playing;
    this.refusal = "";
    this.socket.emit("replay", { id: this.id, t: this.target, speed: this.speed, playing });
    this.onChange();
  }

  step(seconds, perfNow) {
    const from = this.active ? this.now(perfNow) : epochS();
    this.seek(from + seconds);
  }

  togglePlay(perfNow) {
    if (!this.active) this.seek(epochS(), false); // pause the live map where it is
    else this._control(!this.playing, perfNow);
  }

  setSpeed(speed, perfNow) {
    this.speed = speed;
    if (this.active) this._control(this.playing, perfNow);
    else this.onChange();
  }

  live() {
    if (!this.active) return;
    this.mode = "live";
    this.id += 1; // whatever replay frame is still on its way is not taken
    this.socket.emit("live");
    this.onChange();
  }

  /** The server refused (too many replays) or the replay stopped: the page is live again. */
  refused(payload) {
    if (payload.id !== this.id) return; // about a seek this page has moved on from
    this.mode = "live";
    this.refusal = String(payload.reason || "The dashboard refused to replay.");
    this.onChange();
  }

  /** After a reconnection the server knows nothing of this replay: start it again where it was. */
  reconnected(perfNow) {
    if (this.active) this.seek(this.now(perfNow) ?? epochS());
  }

  _control(playing, perfNow) {
    if (this.mode === "seeking") {
      this.seek(this.target, playing); // no clock on the server yet: ask again with the new state
      return;
    }
    this.id += 1;
    this.playing = playing;
    this.clock.sync({ t: this.now(perfNow), speed: this.speed, playing }, perfNow);
    this.socket.emit("replay_control", { id: this.id, speed: this.speed, playing });
    this.onChange();
  }
}

/** The time bar: the retained range with its histogram, a scrubber, the buttons; text only, no markup. */
export class Timebar {
  constructor(replay, nowOf) {
    this.replay = replay;
    this.nowOf = nowOf; // () => the replayed time, or null when live
    this.root = byId("timebar");
    this.range = byId("timebar-range");
    this.canvas = byId("timebar-histogram");
    this.status = byId("timebar-status");
    this.note = byId("timebar-note");
    this.start = byId("timebar-start");
    this.playButton = byId("replay-play");
    this.liveButton = byId("replay-live");
    this.speedSelect = byId("replay-speed");
    this.timeline = null;
    this.scrubbing = false;
    this._bind();
    this.load();
    setInterval(() => this.load(), TIMELINE_EVERY_MS);
  }

  async load() {
    try {
      const response = await fetch(TIMELINE_URL, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      this.timeline = await response.json();
    } catch (error) {
      this.timeline = { start: null, counts: [], error: `the time bar is unavailable: ${error.message}` };
    }
    this.update();
    this.draw();
  }

  _bind() {
    const perf = () => performance.now();
    const step = (id, seconds) => byId(id).addEventListener("click", () => this.replay.step(seconds, perf()));
    step("replay-back-60", -STEPS_S.large);
    step("replay-back-10", -STEPS_S.small);
    step("replay-fwd-10", STEPS_S.small);
    step("replay-fwd-60", STEPS_S.large);
    this.playButton.addEventListener("click", () => this.replay.togglePlay(perf()));
    this.liveButton.addEventListener("click", () => this.replay.live());
    this.speedSelect.addEventListener("change", () => this.replay.setSpeed(Number(this.speedSelect.value), perf()));
    this.range.addEventListener("input", () => {
      this.scrubbing = true;
      this._say(`Replay from ${formatReplayTime(Number(this.range.value))}`);
    });
    this.range.addEventListener("change", () => {
      this.scrubbing = false;
      this.replay.seek(Number(this.range.value));
    });
  }

  /** Once a second and at every change: the range's ends, the thumb, the words and the buttons. */
  update() {
    const replay = this.replay;
    const now = epochS();
    const start = this.timeline && this.timeline.start;
    this.range.min = String(Math.floor(start ?? now - 60));
    this.range.max = String(Math.floor(now));
    const t = this.nowOf();
    if (!this.scrubbing) {
      this.range.value = String(Math.round(t ?? now));
      this._say(this._words(t));
    }
    this.range.setAttribute("aria-valuetext", t === null ? "live" : formatReplayTime(t));
    this.start.textContent = start ? formatReplayTime(start) : "–";
    this.root.dataset.mode = replay.active ? "replay" : "live";
    this.liveButton.disabled = !replay.active;
    this.playButton.textContent = replay.active && !replay.playing ? "Play" : "Pause";
    if (this.speedSelect.value !== String(replay.speed)) this.speedSelect.value = String(replay.speed);
    const error = this.timeline && this.timeline.error;
    this.note.textContent = replay.refusal || error || "";
  }

  _words(t) {
    const replay = this.replay;
    if (replay.mode === "seeking") return `Replay: looking up ${formatReplayTime(replay.target)}…`;
    if (replay.mode === "replay" && t !== null) {
      const how = replay.playing ? `at ${replay.speed}×` : "paused";
      return `Replaying ${formatReplayTime(t)}, ${how}`;
    }
    return "live";
  }

  _say(text) {
    if (this.status.textContent !== text) this.status.textContent = text;
  }

  /** The histogram of fixes over the retained time, behind the scrubber, in the theme's accent colour. */
  draw() {
    const canvas = this.canvas;
    const counts = (this.timeline && this.timeline.counts) || [];
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (!width || !height) return;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const most = Math.max(0, ...counts);
    if (!most) return;
    ctx.fillStyle = getComputedStyle(this.root).getPropertyValue("--histogram").trim() || "rgba(15, 118, 110, 0.35)";
    const bar = width / counts.length;
    counts.forEach((count, k) => {
      const h = Math.max(count ? ratio : 0, (count / most) * height);
      ctx.fillRect(k * bar, height - h, Math.max(1, bar - ratio), h);
    });
  }
}
