// The driver search, an ARIA combobox (the WAI-ARIA "list autocomplete" pattern): while the reader
// types, a listbox offers up to 8 driver ids that match (prefix matches first, then ids that hold
// the text elsewhere; case-insensitive), with how many more match. Arrow keys move through the
// offers, Enter or a click chooses, Escape closes the list. Ids come from Kafka: each is shown as
// text, in an element of its own direction (dir="auto", the kafka-text class).

import { setText } from "./panel.js";

export const MAX_OPTIONS = 8;
const number = new Intl.NumberFormat("en-US");

/**
 * The ids that match `text` (case-insensitive): at most `limit`, those that start with it first, then
 * those that hold it elsewhere, each group in id order (so an id typed in full comes first); and
 * how many match in all.
 */
export function matchIds(ids, text, limit = MAX_OPTIONS) {
  const needle = text.trim().toLowerCase();
  if (!needle) return { shown: [], total: 0 };
  const prefix = [];
  const inside = [];
  for (const id of ids) {
    const folded = id.toLowerCase();
    if (folded.startsWith(needle)) prefix.push([folded, id]);
    else if (folded.includes(needle)) inside.push([folded, id]);
  }
  const shown = smallest(prefix, limit);
  if (shown.length < limit) shown.push(...smallest(inside, limit - shown.length));
  return { shown: shown.map(([, id]) => id), total: prefix.length + inside.length };
}

// The `k` first of `pairs` ([folded, id]) in id order, without sorting them all (typing "d" can match 10,000 ids).
function smallest(pairs, k) {
  const kept = [];
  for (const pair of pairs) {
    if (kept.length === k && before(kept[k - 1], pair)) continue;
    let at = kept.length;
    while (at > 0 && before(pair, kept[at - 1])) at -= 1;
    kept.splice(at, 0, pair);
    if (kept.length > k) kept.pop();
  }
  return kept;
}

function before([foldedA, a], [foldedB, b]) {
  return foldedA < foldedB || (foldedA === foldedB && a < b);
}

export class Search {
  /**
   * `ids()` gives every driver id held now; `statusOf(id)` its status name; `choose(id)` is called
   * when the reader picks one; `submit(text, total)` when Enter is pressed with no offer picked.
   */
  constructor({ ids, statusOf, choose, submit }) {
    this.input = document.getElementById("search-input");
    this.form = document.getElementById("search");
    this.popup = document.getElementById("search-popup");
    this.listbox = document.getElementById("search-options");
    this.more = document.getElementById("search-more");
    Object.assign(this, { ids, statusOf, choose, submit });
    this.options = [];
    this.active = -1;
    this.total = 0;
    this.input.addEventListener("input", () => this.update());
    this.input.addEventListener("keydown", (ev) => this._key(ev));
    this.input.addEventListener("blur", () => this.close());
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this._enter();
    });
    // A press on an offer must not take the focus from the input (that would close the list first).
    this.listbox.addEventListener("mousedown", (ev) => ev.preventDefault());
    this.listbox.addEventListener("click", (ev) => {
      const option = ev.target.closest("[role=option]");
      if (option) this._pick(this.options.indexOf(option));
    });
  }

  get open() {
    return !this.popup.hidden;
  }

  /** Offer the ids that match what is typed now. */
  update() {
    const { shown, total } = matchIds(this.ids(), this.input.value);
    this.total = total;
    while (this.options.length < shown.length) this.options.push(this._option(this.options.length));
    this.options.forEach((option, i) => {
      if (i >= shown.length) {
        option.remove();
        return;
      }
      option.dataset.driverId = shown[i];
      option.firstChild.dataset.status = this.statusOf(shown[i]);
      setText(option.lastChild, shown[i]);
      if (!option.parentNode) this.listbox.append(option);
    });
    this.options.length = shown.length;
    const rest = total - shown.length;
    setText(this.more, rest > 0 ? `${number.format(rest)} more ${rest === 1 ? "match" : "matches"}: keep typing` : "");
    this._setActive(-1);
    this._show(shown.length > 0);
  }

  close() {
    this._setActive(-1);
    this._show(false);
  }

  _show(visible) {
    this.popup.hidden = !visible;
    this.input.setAttribute("aria-expanded", String(visible));
  }

  _option(i) {
    const option = document.createElement("li");
    option.setAttribute("role", "option");
    option.id = `search-option-${i}`;
    option.setAttribute("aria-selected", "false");
    const dot = document.createElement("i");
    dot.className = "dot";
    dot.setAttribute("aria-hidden", "true");
    const id = document.createElement("span");
    id.className = "mono kafka-text";
    id.dir = "auto";
    option.append(dot, id);
    return option;
  }

  _setActive(i) {
    if (this.active >= 0 && this.options[this.active]) this.options[this.active].setAttribute("aria-selected", "false");
    this.active = i;
    if (i < 0) {
      this.input.removeAttribute("aria-activedescendant");
      return;
    }
    const option = this.options[i];
    option.setAttribute("aria-selected", "true");
    this.input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  _key(ev) {
    const n = this.options.length;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (!this.open) {
        this.update();
        if (!this.options.length) return;
      }
      const step = ev.key === "ArrowDown" ? 1 : -1;
      // From the input, down goes to the first offer and up to the last; past either end, back to the input.
      let next = this.active + step;
      if (this.active < 0 && step < 0) next = n - 1;
      this._setActive(next >= n || next < -1 ? -1 : next);
    } else if (ev.key === "Escape" && this.open) {
      ev.preventDefault();
      ev.stopPropagation(); // one Escape closes the list, the next one the details
      this.close();
    } else if ((ev.key === "Home" || ev.key === "End") && this.active >= 0) {
      ev.preventDefault();
      this._setActive(ev.key === "Home" ? 0 : n - 1);
    }
  }

  _enter() {
    if (this.open && this.active >= 0) {
      this._pick(this.active);
      return;
    }
    const text = this.input.value.trim();
    if (!text) return;
    const { shown, total } = matchIds(this.ids(), text);
    const exact = shown.find((id) => id === text) ?? shown.find((id) => id.toLowerCase() === text.toLowerCase());
    if (exact !== undefined || total === 1) this._choose(exact ?? shown[0]);
    else this.submit(text, total);
  }

  _pick(i) {
    if (i >= 0 && i < this.options.length) this._choose(this.options[i].dataset.driverId);
  }

  _choose(id) {
    this.input.value = id;
    this.close();
    this.choose(id);
  }
}
