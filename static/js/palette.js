// The colours the canvas draws with, per theme. page.css holds the same status and rider colours as
// custom properties (tests/test_page_a11y.py checks that they agree, that each status stands out
// from the map at 3:1 or more, and that the statuses stay apart under protanopia, deuteranopia and
// tritanopia). Based on Okabe and Ito's palette for colour-blind readers; each status also has its
// own shape (SHAPES), so colour is never the only cue.

export const PALETTES = Object.freeze({
  light: Object.freeze({
    map: "#f4f6f9",
    available: "#009e73",
    on_trip: "#005ea8",
    offline: "#7c8596",
    unknown: "#d55e00",
    waiting: "#c2388a",
    en_route: "#7c3aed",
    outline: "rgba(255, 255, 255, 0.95)", // around every marker
    hollow: "#ffffff", // inside an offline ring
    ring: "rgba(15, 23, 42, 0.85)", // around the selected driver or rider
    ringHalo: "rgba(255, 255, 255, 0.9)",
    trail: "#0f172a",
    line: "rgba(124, 58, 237, 0.9)", // from a driver to its rider
    lineHalo: "rgba(255, 255, 255, 0.85)",
  }),
  dark: Object.freeze({
    map: "#0f1624",
    available: "#34d399",
    on_trip: "#3b82f6",
    offline: "#9ca3af",
    unknown: "#f97316",
    waiting: "#e46cb0",
    en_route: "#a78bfa",
    outline: "rgba(15, 22, 36, 0.95)",
    hollow: "#0f1624",
    ring: "rgba(241, 245, 249, 0.9)",
    ringHalo: "rgba(15, 22, 36, 0.9)",
    trail: "#e2e8f0",
    line: "rgba(167, 139, 250, 0.95)",
    lineHalo: "rgba(15, 22, 36, 0.85)",
  }),
});

// The second cue: a shape per status, on the map and in the legend.
export const SHAPES = Object.freeze({ available: "circle", on_trip: "square", offline: "ring", unknown: "diamond" });
