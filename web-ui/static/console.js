// The console's only script of its own: progressive enhancement on top of htmx. Every page
// works without it.
(function () {
  "use strict";
  // Upload progress: forms with data-progress="ID" fill that <progress> while htmx uploads.
  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = event.target.closest && event.target.closest("form[data-progress]");
    if (!form || !event.detail.lengthComputable) return;
    var bar = document.getElementById(form.dataset.progress);
    if (!bar) return;
    bar.hidden = false;
    bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
  });
  // The import form shows only the fields of the chosen source.
  function showSource(form) {
    var checked = form.querySelector("input[name=source]:checked");
    var source = checked ? checked.value : "upload";
    ["upload", "uri", "container"].forEach(function (s) {
      form.querySelectorAll(".when-" + s).forEach(function (el) { el.hidden = s !== source; });
    });
  }
  function init(root) {
    root.querySelectorAll("form#import").forEach(function (form) {
      showSource(form);
      form.addEventListener("change", function () { showSource(form); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
})();
