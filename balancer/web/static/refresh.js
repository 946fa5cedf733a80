// Refresh the main part in place, keeping open <details> open; without script the page
// refreshes itself through its <noscript> meta tag.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var every = 1000 * Number(main.dataset.refresh || 5);
  function openKeys() {
    return Array.prototype.map.call(main.querySelectorAll("details[open]"), function (d) {
      var outer = d.closest("details.decision");
      return (outer ? outer.dataset.key : "") + "|" + d.querySelector("summary").textContent;
    });
  }
  function refresh() {
    fetch("fragment", {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var keep = openKeys();
        main.innerHTML = html;
        main.querySelectorAll("details").forEach(function (d) {
          var outer = d.closest("details.decision");
          var key = (outer ? outer.dataset.key : "") + "|" + d.querySelector("summary").textContent;
          if (keep.indexOf(key) >= 0) { d.open = true; }
        });
        main.dataset.refreshed = String(Date.now());
      })
      .catch(function () { /* the next round tries again */ })
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
