// Moments are sent in UTC (<time datetime="…Z" data-local="kind">, written by the human_time filter) so that
// the page reads the same for everyone without JavaScript; this shows each in the reader's own time zone and
// language: "today 14:16", "yesterday 09:02", "3 May 14:16", with the full moment in the tooltip.
(function () {
  "use strict";
  var lang = document.documentElement.lang || "en";
  var DAY = 86400000;

  function startOfDay(when) {
    return new Date(when.getFullYear(), when.getMonth(), when.getDate()).getTime();
  }

  function clock(when, seconds) {
    var options = {hour: "2-digit", minute: "2-digit", hourCycle: "h23"};
    if (seconds) { options.second = "2-digit"; }
    return when.toLocaleTimeString(lang, options);
  }

  function day(when, now) {
    var days = Math.round((startOfDay(when) - startOfDay(now)) / DAY);
    if (Math.abs(days) <= 1 && window.Intl && Intl.RelativeTimeFormat) {
      return new Intl.RelativeTimeFormat(lang, {numeric: "auto"}).format(days, "day");
    }
    var options = {month: "short", day: "numeric"};
    if (when.getFullYear() !== now.getFullYear()) { options.year = "numeric"; }
    return when.toLocaleDateString(lang, options);
  }

  function text(when, kind, now) {
    if (kind === "time") { return clock(when, false); }
    if (kind === "date") { return day(when, now); }
    return day(when, now) + " " + clock(when, kind === "precise");
  }

  function zone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }

  // Every moment under ``root``; pages that add content later may call window.localTimes(element).
  function localise(root) {
    var now = new Date();
    root.querySelectorAll("time[data-local]").forEach(function (element) {
      var when = new Date(element.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      element.textContent = text(when, element.getAttribute("data-local"), now);
      element.title = when.toLocaleString(lang, {dateStyle: "full", timeStyle: "long"});
    });
    // Chart labels: the start of each bucket, as a clock time.
    root.querySelectorAll("text[data-time]").forEach(function (label) {
      var when = new Date(label.getAttribute("data-time"));
      if (!isNaN(when.getTime())) { label.textContent = clock(when, false); }
    });
    var name = zone();
    root.querySelectorAll("[data-local-zone]").forEach(function (element) {
      if (name) { element.textContent = name; }
    });
  }

  localise(document);
  window.localTimes = localise;
})();
