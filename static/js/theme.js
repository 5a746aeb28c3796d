// Light and dark. The page follows the system (prefers-color-scheme) until the reader presses the
// theme button; a choice that differs from the system is remembered on this device (localStorage),
// one that agrees with it is forgotten, so the page follows the system again. static/js/theme-init.js
// applies the remembered choice before the first paint.

import { PALETTES } from "./palette.js";
import { recall, remember } from "./storage.js";

const STORAGE_KEY = "fleet-map.theme";
const SYSTEM_DARK = "(prefers-color-scheme: dark)";

export class Theme {
  /** `button` toggles the theme; `onChange(name)` is called after every change. */
  constructor(button, onChange) {
    this.button = button;
    this.onChange = onChange;
    this.system = window.matchMedia(SYSTEM_DARK);
    this.system.addEventListener("change", () => this._apply());
    button.addEventListener("click", () => this.toggle());
    this._apply();
  }

  get name() {
    return document.documentElement.dataset.theme === "dark" ? "dark" : "light";
  }

  get palette() {
    return PALETTES[this.name];
  }

  toggle() {
    const next = this.name === "dark" ? "light" : "dark";
    remember(STORAGE_KEY, next === this._systemName() ? null : next);
    this._apply();
  }

  _systemName() {
    return this.system.matches ? "dark" : "light";
  }

  _apply() {
    const choice = recall(STORAGE_KEY);
    const name = choice === "dark" || choice === "light" ? choice : this._systemName();
    const changed = document.documentElement.dataset.theme !== name;
    document.documentElement.dataset.theme = name;
    this.button.setAttribute("aria-pressed", String(name === "dark"));
    if (changed) this.onChange(name);
  }
}
