// Copy buttons: <button data-copy-target="ID" data-copied="..." data-copy-failed="..."> copies the text
// of the element ID. The labels come from the page (translated by the server). Without this script,
// or when the browser refuses, the text stays on the page to select by hand.
(function () {
  "use strict";

  function flash(button, label) {
    var original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = label;
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }

  // Plain-HTTP pages (an intranet address) have no clipboard API: select the text and ask for a copy.
  function copyBySelection(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    return copied;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var element = document.getElementById(button.dataset.copyTarget);
    if (!element) { return; }
    var text = element.textContent;
    var done = function () { flash(button, button.dataset.copied || "✓"); };
    var failed = function () {
      // Leave the text selected, so Ctrl+C (or the long press on a phone) copies it.
      copyBySelection(element);
      flash(button, button.dataset.copyFailed || "×");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        if (copyBySelection(element)) { done(); } else { failed(); }
      });
    } else if (copyBySelection(element)) {
      done();
    } else {
      failed();
    }
  });
})();
