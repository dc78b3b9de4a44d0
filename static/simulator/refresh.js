/* Keeps the simulator's pages current without reloading them: polls a version number that
   changes whenever the simulated world does, and when it moves, fetches the page again and
   swaps in the regions marked data-live (forms outside them keep what the user typed). A chat
   marked data-newest-last opens scrolled to its newest message, at the bottom, and stays there
   when new ones arrive unless the reader scrolled up. */
(function () {
  "use strict";

  function toBottom(region) { region.scrollTop = region.scrollHeight; }
  function atBottom(region) { return region.scrollHeight - region.scrollTop - region.clientHeight < 24; }

  document.querySelectorAll("[data-newest-last]").forEach(toBottom);

  var body = document.body;
  var versionUrl = body.getAttribute("data-version-url");
  var version = body.getAttribute("data-version");
  var INTERVAL_MS = 3000;
  var busy = false;

  if (!versionUrl || !window.fetch || !window.DOMParser) {
    return;
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live]").forEach(function (region) {
      var fresh = region.id ? doc.getElementById(region.id) : null;
      if (!fresh) {
        return;
      }
      // Keep the reader's place in a scrolled message list (the bottom of a chat, if they were there).
      var scroll = region.scrollTop;
      var following = region.hasAttribute("data-newest-last") && atBottom(region);
      region.replaceWith(fresh);
      if (following) { toBottom(fresh); } else { fresh.scrollTop = scroll; }
    });
    version = doc.body.getAttribute("data-version") || version;
  }

  function fetchPage() {
    return fetch(window.location.href, { cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html) { swap(html); } });
  }

  function poll() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(versionUrl, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && String(data.version) !== String(version)) {
          return fetchPage();
        }
        return null;
      })
      .catch(function () { /* the simulator may be restarting: try again on the next tick */ })
      .then(function () { busy = false; });
  }

  window.setInterval(poll, INTERVAL_MS);
}());
