// Live preview on the preferences page: after each change, ask the server what today's
// digest would give and show its HTML (rendered and escaped by the server).
(function () {
  "use strict";
  var form = document.getElementById("preferences");
  var target = document.getElementById("preview");
  if (!form || !target || !window.fetch) { return; }
  var url = form.getAttribute("data-preview");
  var timer = null;
  var latest = 0;

  function refresh() {
    var params = new URLSearchParams();
    ["keywords", "exclude", "min_votes", "max_papers"].forEach(function (name) {
      var field = form.elements.namedItem(name);
      if (field) { params.set(name, field.value); }
    });
    var ticket = ++latest;
    target.setAttribute("aria-busy", "true");
    fetch(url + "?" + params.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        if (ticket !== latest) { return; }  // an older answer arriving late must not win
        target.innerHTML = html;
        target.removeAttribute("aria-busy");
      })
      .catch(function () { target.removeAttribute("aria-busy"); });
  }

  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
