// Runs in <head>, before anything is drawn: the theme the reader chose on this device, else the
// system's (prefers-color-scheme). static/js/theme.js keeps it current afterwards.
(function () {
  var choice = null;
  try {
    choice = window.localStorage.getItem("fleet-map.theme");
  } catch (error) {
    choice = null; // storage refused (private mode, policy): follow the system
  }
  var dark = choice === "dark" || (choice !== "light" && window.matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
})();
