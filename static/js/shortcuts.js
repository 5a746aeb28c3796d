// The keyboard shortcuts sheet (`?`, or the panel's ? button), a modal dialog, and its switch for
// single-key shortcuts: a reader whose speech or switch software types letters can turn them off
// (WCAG 2.1.4), and the page remembers it on this device. Escape, arrows and Enter always work.

import { recall, remember } from "./storage.js";

const STORAGE_KEY = "fleet-map.single-key-shortcuts";
const byId = (id) => document.getElementById(id);

export class Shortcuts {
  constructor() {
    this.dialog = byId("shortcuts");
    this.openButton = byId("shortcuts-open");
    this.enabledBox = byId("shortcuts-enabled");
    this.enabledBox.checked = recall(STORAGE_KEY) !== "off";
    this.enabledBox.addEventListener("change", () => remember(STORAGE_KEY, this.enabledBox.checked ? null : "off"));
    this.openButton.addEventListener("click", () => this.show());
    byId("shortcuts-close").addEventListener("click", () => this.dialog.close());
    // A click on the backdrop (outside the sheet's box) closes it too.
    this.dialog.addEventListener("click", (ev) => {
      if (ev.target === this.dialog && !insideBox(this.dialog, ev)) this.dialog.close();
    });
  }

  /** Whether `/`, `f`, `?`, Space and the replay arrows act (the reader may turn them off). */
  get enabled() {
    return this.enabledBox.checked;
  }

  get open() {
    return this.dialog.open;
  }

  show() {
    if (!this.dialog.open) this.dialog.showModal();
  }
}

function insideBox(element, ev) {
  const box = element.getBoundingClientRect();
  return ev.clientX >= box.left && ev.clientX <= box.right && ev.clientY >= box.top && ev.clientY <= box.bottom;
}
