// Applies the saved theme before the page paints (loaded in <head>), so a dark screen never flashes white.
"use strict";
(function () {
  const saved = localStorage.getItem("dashboard-theme");
  if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
})();
