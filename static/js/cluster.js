// The panel's Kafka cluster view: brokers up and down, and per partition of each topic the dashboard
// reads its leader, replicas, in-sync replicas (ISR) and offsets, from GET /api/kafka. It asks only
// while its <details> is open (every 2 s, not while the tab is hidden), so a closed section costs the
// dashboard no metadata requests. Topic names, hosts and error sentences come from Kafka: they go into
// the page as text (textContent, DOM nodes), never as markup.

import { setText } from "./panel.js";

export const POLL_MS = 2000;
// Offsets grow to tens of millions: past this they are shown compact (the exact number is the cell's title).
const EXACT_BELOW = 100000;
// Two-word headings break where the \n is (white-space: pre-line in page.css): the panel is too narrow for one line.
const COLUMNS = Object.freeze([
  ["part.", "partition"],
  ["leader", "the broker that takes the partition's writes and reads"],
  ["replicas", "brokers holding a copy, the preferred leader first"],
  ["ISR", "in-sync replicas: the copies that are up to date"],
  ["end\noffset", "offset of the next record written"],
  ["read\nup to", "the dashboard's position: the next offset it reads"],
  ["lag", "records written that the dashboard has not read yet"],
]);

const exact = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

function offsetText(value) {
  if (value === null || value === undefined) return null;
  return value < EXACT_BELOW ? exact.format(value) : compact.format(value);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(epochS) {
  return new Date(epochS * 1000).toLocaleTimeString("en-GB");
}

export class KafkaCluster {
  constructor(details) {
    this.details = details;
    this.brokers = details.querySelector("#cluster-brokers");
    this.topics = details.querySelector("#cluster-topics");
    this.error = details.querySelector("#cluster-error");
    this.note = details.querySelector("#cluster-note");
    this._timer = null;
    this._inFlight = false;
    details.addEventListener("toggle", () => (details.open ? this._poll() : this._stop()));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && details.open && this._timer === null) this._poll();
    });
  }

  _stop() {
    clearTimeout(this._timer);
    this._timer = null;
  }

  async _poll() {
    this._stop();
    if (!this.details.open || document.hidden) return; // asked again when opened or shown
    if (!this._inFlight) {
      this._inFlight = true;
      try {
        // Same origin: the token's cookie, when there is one, goes with the request.
        const response = await fetch("api/kafka", { cache: "no-store" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this.show(await response.json());
      } catch (error) {
        this._showError(`The dashboard did not answer: ${error.message}`);
      } finally {
        this._inFlight = false;
      }
    }
    if (this.details.open) this._timer = setTimeout(() => this._poll(), POLL_MS);
  }

  _showError(text) {
    setText(this.error, text || "");
    this.error.hidden = !text;
  }

  /** Draw a /api/kafka answer (docs/api.md) in place of the previous one. */
  show(view) {
    this._showError(view.error);
    this.brokers.replaceChildren(...(view.brokers || []).map((b) => this._broker(b)));
    this.topics.replaceChildren(...(view.topics || []).map((t) => this._topic(t)));
    setText(this.note, view.updated_at ? `Metadata as of ${clock(view.updated_at)}, asked every ${POLL_MS / 1000} s` : "");
  }

  _broker(broker) {
    const item = el("li", "broker");
    item.dataset.up = String(Boolean(broker.up));
    const address = broker.host === null ? "address unknown" : `${broker.host}:${broker.port}`;
    item.append(
      el("span", "broker-id", `broker ${broker.id}`),
      el("span", "mono kafka-text broker-address", address),
      el("span", "broker-state", broker.up ? "up" : "down"),
    );
    item.querySelector(".broker-address").dir = "auto";
    return item;
  }

  _topic(topic) {
    const rows = topic.partitions || [];
    const name = el("span", "mono kafka-text", topic.topic);
    name.dir = "auto";
    if (!rows.length) {
      // A topic the matcher has not created yet: its name and why there is nothing to show, no empty table.
      const line = el("p", "cluster-missing");
      line.append(name, el("span", "note", topic.exists ? " no partitions yet" : " not created yet"));
      return line;
    }
    const table = el("table", "cluster-table");
    const caption = el("caption");
    caption.append(name);
    table.append(caption, this._head());
    const body = el("tbody");
    rows.forEach((p) => body.append(this._row(p)));
    table.append(body);
    const wrap = el("div", "cluster-topic");
    wrap.append(table);
    const short = rows.filter((p) => p.under_replicated).length;
    if (short) {
      const plural = short === 1 ? "partition is" : "partitions are";
      wrap.append(el("p", "warning", `${short} ${plural} under-replicated: fewer in-sync replicas than replicas.`));
    }
    return wrap;
  }

  _head() {
    const head = el("thead");
    const row = el("tr");
    for (const [label, meaning] of COLUMNS) {
      const cell = el("th", null, label);
      cell.scope = "col";
      cell.title = meaning;
      row.append(cell);
    }
    head.append(row);
    return head;
  }

  _row(p) {
    const row = el("tr");
    row.classList.toggle("under-replicated", Boolean(p.under_replicated));
    const isr = el("td", "isr", p.isr.join(","));
    if (p.under_replicated) isr.append(el("span", "visually-hidden", " (under-replicated)"));
    const cells = [
      el("td", null, String(p.partition)),
      el("td", p.leader === null ? "no-leader" : null, p.leader === null ? "none" : String(p.leader)),
      el("td", null, p.replicas.join(",")),
      isr,
    ];
    for (const value of [p.end_offset, p.position, p.lag]) {
      const cell = el("td", null, offsetText(value) ?? "–");
      if (value !== null && value !== undefined && value >= EXACT_BELOW) cell.title = exact.format(value);
      cells.push(cell);
    }
    row.append(...cells);
    return row;
  }
}
