// Behaviour shared by every page. Page-specific scripts live in their own files.
(function () {
  "use strict";
  // Disable a form's submit buttons once it is sent, so a double click cannot submit twice.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    window.setTimeout(function () {
      form.querySelectorAll("[type=submit]").forEach(function (b) { b.disabled = true; });
    }, 0);
  });
})();
