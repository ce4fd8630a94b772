// Every console page: keep "N ago" ages current. No inline script anywhere (CSP).
"use strict";
(function () {
  function age(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m " + (seconds % 60) + "s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + "h " + Math.floor(seconds % 3600 / 60) + "m";
    return Math.floor(seconds / 86400) + "d " + Math.floor(seconds % 86400 / 3600) + "h";
  }
  function tick() {
    document.querySelectorAll("time[data-created]").forEach(function (t) {
      t.textContent = age(Date.now() / 1000 - parseFloat(t.dataset.created)) + " ago";
    });
  }
  setInterval(tick, 5000);
})();
