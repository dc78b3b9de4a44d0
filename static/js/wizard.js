// The set-up wizard's behaviour. Every page works without it (the server checks and renders
// everything); this adds: the checks a page makes as it opens, Generate and Copy buttons, the browser's
// reach of WeChat's sites, the live
// template preview, and watching for WeChat's URL check and for the test message's receipt.
// Texts come from data-* attributes (translated by the server); nothing here is inline in a page.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  function getJSON(url) {
    return fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok || body.result === false) { throw new Error(body.message || ("HTTP " + r.status)); }
          return body;
        });
      });
  }

  function localTime(iso) {
    var when = new Date(iso);
    if (isNaN(when.getTime())) { return iso; }
    return ("0" + when.getHours()).slice(-2) + ":" + ("0" + when.getMinutes()).slice(-2);
  }

  // --- Generate and Copy buttons ---------------------------------------------------------------
  function copy(text, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = "✓";
      setTimeout(function () { button.textContent = label; }, 1200);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
      return;
    }
    // Plain-HTTP pages have no clipboard API: copy through a temporary text field.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } catch (e) { /* the value stays selectable */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-generate], [data-copy-from], [data-copy-from-text], [data-copy-text]");
    if (!button) { return; }
    if (button.dataset.generate) {
      var target = $(button.dataset.target);
      button.disabled = true;
      getJSON(button.dataset.generateUrl)
        .then(function (answer) {
          target.value = answer.value;
          target.classList.remove("is-invalid");
          target.dispatchEvent(new Event("input", { bubbles: true }));
          target.focus();
          target.select();
        })
        .catch(function () {})
        .then(function () { button.disabled = false; });
    } else if (button.dataset.copyFrom) {
      copy($(button.dataset.copyFrom).value, button);
    } else if (button.dataset.copyFromText) {
      copy($(button.dataset.copyFromText).textContent.trim(), button);
    } else {
      copy(button.dataset.copyText, button);
    }
  });
  // Drawn disabled: a press before this script runs would otherwise do nothing at all.
  document.querySelectorAll("[data-generate]").forEach(function (button) { button.disabled = false; });

  // --- Prerequisites and trusted domain: check at once when the page has no outcome yet ---------
  // Opening a page changes nothing; its check is a POST ("Check now"), pressed here as the page opens.
  // Without JavaScript the administrator presses it.
  document.querySelectorAll("form[data-autocheck]").forEach(function (form) {
    var button = form.querySelector("[name='" + form.dataset.autocheck + "']");
    if (!button) { return; }
    if (form.requestSubmit) { form.requestSubmit(button); } else { button.click(); }
  });

  // --- Prerequisites: which WeChat sites this browser loads -----------------------------------
  var checks = $("browser-checks");
  if (checks) {
    checks.querySelectorAll("[data-probe-url]").forEach(function (item) {
      var badge = item.querySelector("[data-probe-state]");
      badge.className = "badge text-bg-secondary";
      badge.textContent = checks.dataset.textChecking;
      var controller = window.AbortController ? new AbortController() : null;
      var timer = setTimeout(function () { if (controller) { controller.abort(); } }, 6000);
      // no-cors: any answer at all (even an error page) proves the site is reachable; only a
      // blocked or unresolvable site makes the request fail.
      fetch(item.dataset.probeUrl + "?_=" + Date.now(), { mode: "no-cors", cache: "no-store", credentials: "omit",
        signal: controller ? controller.signal : undefined })
        .then(function () {
          badge.className = "badge text-bg-success";
          badge.textContent = checks.dataset.textOk;
          item.dataset.state = "ok";
        })
        .catch(function () {
          badge.className = "badge text-bg-warning";
          badge.textContent = checks.dataset.textFailed;
          item.dataset.state = "failed";
        })
        .then(function () { clearTimeout(timer); });
    });
  }

  // --- Template: the mapping follows the chosen template; the preview follows the mapping -----
  var templateForm = $("template-form");
  if (templateForm) {
    var selects = templateForm.querySelectorAll("select[data-parameter]");
    var pending = null;
    var sequence = 0;

    var refresh = function () {
      var chosen = templateForm.querySelector("input[name=wx_template_id]:checked");
      if (!chosen) { return; }
      var query = new URLSearchParams();
      query.set("wx_template_id", chosen.value);
      selects.forEach(function (s) { query.set("map_" + s.dataset.parameter, s.value); });
      templateForm.querySelectorAll("[data-sample]").forEach(function (f) { query.set(f.name, f.value); });
      var mine = ++sequence;
      getJSON(templateForm.dataset.previewUrl + "?" + query.toString())
        .then(function (answer) {
          if (mine !== sequence) { return; }  // a newer request is on its way
          $("preview").innerHTML = answer.data.html;
        })
        .catch(function () {
          if (mine === sequence) { $("preview").innerHTML = ""; $("preview").textContent = templateForm.dataset.textError; }
        });
    };
    var soon = function () { clearTimeout(pending); pending = setTimeout(refresh, 250); };

    var useTemplate = function (radio) {
      // Offer exactly this template's keys, and the mapping that shows most of a notification.
      var keys = JSON.parse(radio.dataset.keys || "[]");
      var suggest = JSON.parse(radio.dataset.suggest || "{}");
      selects.forEach(function (select) {
        var empty = select.options[0];
        while (select.options.length > 1) { select.remove(1); }
        keys.forEach(function (key) { select.add(new Option(key, key)); });
        select.value = suggest[select.dataset.parameter] || "";
        if (select.selectedIndex < 0) { select.value = empty.value; }
        select.classList.remove("is-invalid");
      });
    };

    templateForm.addEventListener("change", function (event) {
      if (event.target.name === "wx_template_id") { useTemplate(event.target); }
      if (event.target.name === "wx_template_id" || event.target.matches("select[data-parameter]")) { refresh(); }
    });
    templateForm.addEventListener("input", function (event) {
      if (event.target.matches("[data-sample]")) { soon(); }
    });
  }

  // --- Callback: watch for WeChat's own URL check ---------------------------------------------
  var watch = $("wechat-verification");
  if (watch && watch.dataset.state !== "verified") {
    var started = Date.now();
    var show = function (state) {
      watch.dataset.state = state.state;
      watch.textContent = "";
      var line = document.createElement("span");
      if (state.state === "verified") {
        line.className = "text-success fw-semibold";
        line.textContent = "✓ " + watch.dataset.textVerified.replace("{time}", localTime(state.at));
        // Done on WeChat's side: the instructions to press Submit no longer apply.
        ["now-submit", "dont-submit-yet"].forEach(function (id) { if ($(id)) { $(id).hidden = true; } });
      } else if (state.state === "failed") {
        line.className = "text-danger";
        line.textContent = watch.dataset.textFailed.replace("{time}", localTime(state.at)) + " " + state.message;
      } else {
        line.className = "text-body-secondary";
        line.textContent = watch.dataset.textWaiting;
      }
      watch.appendChild(line);
    };
    var poll = function () {
      // Every 3 s for 15 minutes: long enough to switch to WeChat's page and press Submit.
      if (Date.now() - started > 15 * 60 * 1000) {
        watch.appendChild(document.createTextNode(" " + watch.dataset.textStopped));
        return;
      }
      setTimeout(function () {
        getJSON(watch.dataset.statusUrl)
          .then(function (answer) {
            show(answer.data);
            if (answer.data.state !== "verified") { poll(); }
          })
          .catch(poll);
      }, 3000);
    };
    poll();
  } else if (watch && watch.dataset.at) {
    var first = watch.querySelector("span");
    if (first) { first.textContent = "✓ " + watch.dataset.textVerified.replace("{time}", localTime(watch.dataset.at)); }
  }

  // --- Test: "Bind your WeChat first" goes once the QR code (or the sign-in) is shown, or the binding done
  var testError = $("test-error");
  if (testError && window.MutationObserver) {
    var binding = ["attempt", "bound-view"].map($).filter(Boolean);
    var settled = function () {
      if (binding.some(function (section) { return !section.hidden; })) { testError.hidden = true; }
    };
    var observer = new MutationObserver(settled);
    binding.forEach(function (section) { observer.observe(section, { attributes: true, attributeFilter: ["hidden"] }); });
  }

  // --- Test: follow the test message until it is delivered (and, for the Official Account, receipted)
  var result = $("test-result");
  if (result && result.dataset.finished !== "true") {
    var since = Date.now();
    var follow = function () {
      setTimeout(function () {
        getJSON(result.dataset.statusUrl)
          .then(function (answer) {
            result.innerHTML = answer.data.html;
            result.dataset.finished = answer.data.finished ? "true" : "false";
            if (!answer.data.finished && Date.now() - since < 5 * 60 * 1000) { follow(); }
          })
          .catch(function () { if (Date.now() - since < 5 * 60 * 1000) { follow(); } });
      }, 2000);
    };
    follow();
  }
})();
