// The "Bind WeChat" page: start an attempt, show its QR code, count down, and ask the service
// (gently, and for a bounded time) whether the binding happened, then show "bound" without a reload.
(function () {
  "use strict";
  var root = document.getElementById("bind");
  if (!root) { return; }
  var $ = function (id) { return document.getElementById(id); };
  var text = root.dataset;
  var timers = { poll: null, tick: null };
  var attempt = null;

  function show(id, visible) { $(id).hidden = !visible; }
  function stop() { clearTimeout(timers.poll); clearInterval(timers.tick); }
  function error(message) { $("bind-error").textContent = message; show("bind-error", !!message); }

  function countdown() {
    var left = Math.max(0, Math.round((attempt.deadline - Date.now()) / 1000));
    var time = Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2);
    $("countdown").textContent = text.textExpires.replace("{time}", time);
    if (left <= 0) { expired(text.textExpired); }
  }

  function expired(message) {
    stop();
    $("qr").classList.add("opacity-25");
    $("attempt-status").textContent = message;
    $("countdown").textContent = "";
    show("renew", true);
  }

  function bound(data) {
    stop();
    $("bound-id").textContent = data.wx_id || "";
    $("bound-since").textContent = (data.since || "").replace("T", " ");
    $("bound-since").setAttribute("datetime", data.since || "");
    show("attempt", false);
    show("unbound-view", false);
    show("bound-view", true);
    $("bound-title").focus && $("bound-title").setAttribute("tabindex", "-1");
  }

  function poll() {
    // Every 2 s for the first half-minute, then every 5 s; never past the code's expiry.
    var elapsed = Date.now() - attempt.started;
    var delay = elapsed < 30000 ? 2000 : 5000;
    timers.poll = setTimeout(function () {
      if (Date.now() > attempt.deadline + 5000) { expired(text.textStopped); return; }
      fetch(text.statusUrl + "?scene=" + encodeURIComponent(attempt.scene), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (answer) {
          var state = (answer.data.attempt || {}).state;
          if (state === "bound" || (answer.result && state !== "pending")) { bound(answer.data); return; }
          if (state === "refused" || state === "expired") { expired(answer.data.attempt.message); return; }
          poll();
        })
        .catch(function () { poll(); });
    }, delay);
  }

  function start() {
    stop();
    error("");
    fetch(text.startUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (answer) {
        if (!answer.result) { error(answer.message); return; }
        var data = answer.data;
        attempt = { scene: data.scene, started: Date.now(), deadline: Date.now() + data.expire_seconds * 1000 };
        $("qr").src = data.qrcode;
        $("qr").classList.remove("opacity-25");
        $("qr").dataset.content = data.oauth_url || data.url;
        if ($("qy-login")) { $("qy-login").href = data.url; }
        $("attempt-status").textContent = text.textWaiting;
        show("renew", false);
        show("unbound-view", false);
        show("bound-view", false);
        show("attempt", true);
        countdown();
        timers.tick = setInterval(countdown, 1000);
        poll();
      })
      .catch(function () { error(text.textError); });
  }

  root.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action=start]");
    if (button) { start(); }
  });
  // The buttons are drawn disabled so that a press before this script has run is not lost silently.
  Array.prototype.forEach.call(root.querySelectorAll("[data-action=start]"), function (button) { button.disabled = false; });
})();
