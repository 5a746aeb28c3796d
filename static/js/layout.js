// Where the floating parts of the page go, by screen. On a wide screen the legend and the details
// cards float over the map beside the panel. On a small screen (a phone either way up, or a short
// window) they fold into the panel, which is a bottom sheet in portrait and a side sheet in
// landscape, so that nothing covers the map's controls or another part of the page. The queries
// are page.css's own; the bottom sheet's height is kept in --sheet-height for the map's bottom
// controls, which stand just above it.

export const COMPACT = "(max-width: 720px), (max-height: 540px)";
export const BOTTOM_SHEET = "(max-width: 720px) and (orientation: portrait)";

export class Layout {
  /**
   * `cards` go into the panel before `cardSlot`, the `legend` after `legendSlot`; on a wide screen
   * both go back to `mapArea`. `onChange()` is called after they moved (a rotation, a resized window).
   */
  constructor({ panel, cards, cardSlot, legend, legendSlot, mapArea, onChange }) {
    Object.assign(this, { panel, cards, cardSlot, legend, legendSlot, mapArea, onChange });
    // Both kept from their change events: reading `matches` at every frame would swallow Chromium's change events.
    const compact = window.matchMedia(COMPACT);
    const bottom = window.matchMedia(BOTTOM_SHEET);
    /** The legend and the cards live in the panel. */
    this.compact = compact.matches;
    /** The panel spans the bottom of the screen (else it stands on the right). */
    this.bottomSheet = bottom.matches;
    compact.addEventListener("change", (ev) => {
      this.compact = ev.matches;
      this._place();
    });
    bottom.addEventListener("change", (ev) => {
      this.bottomSheet = ev.matches;
      this._measureSheet();
    });
    new ResizeObserver(() => this._measureSheet()).observe(panel);
    this._place();
  }

  /** Pixels at the bottom of the map the panel covers (0 unless it is a bottom sheet). */
  get sheetHeight() {
    return this.bottomSheet ? this.panel.offsetHeight : 0;
  }

  _place() {
    const focused = document.activeElement; // moving an element takes the focus away from it
    if (this.compact) {
      for (const card of this.cards) this.panel.insertBefore(card, this.cardSlot);
      this.legendSlot.after(this.legend);
    } else {
      this.mapArea.append(this.legend, ...this.cards);
    }
    if (focused instanceof HTMLElement && focused !== document.activeElement) focused.focus({ preventScroll: true });
    this._measureSheet();
    this.onChange();
  }

  _measureSheet() {
    document.documentElement.style.setProperty("--sheet-height", `${this.sheetHeight}px`);
  }
}
