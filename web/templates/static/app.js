// The dashboard works without this script; with it, destructive actions
// ask in the browser rather than on a confirmation page, and the fleet
// refreshes itself every few seconds.
"use strict";

document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var question = form.getAttribute("data-confirm");
  if (!question) {
    return;
  }
  if (!window.confirm(question)) {
    ev.preventDefault();
    return;
  }
  var yes = document.createElement("input");
  yes.type = "hidden";
  yes.name = "confirm";
  yes.value = "yes";
  form.appendChild(yes);
});

(function () {
  var live = document.getElementById("live");
  if (!live) {
    return;
  }
  var seconds = parseInt(live.getAttribute("data-refresh"), 10) || 5;
  // Not while a field has the focus, nor while a form is open (the start
  // form's details): a refresh would throw away what was typed.
  function busy() {
    var a = document.activeElement;
    return a && live.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT") ||
      live.querySelector("details[open]") !== null;
  }
  function refresh() {
    if (busy() || document.hidden) {
      return;
    }
    fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh && !busy()) {
          live.innerHTML = fresh.innerHTML;
          live.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {});
  }
  window.setInterval(refresh, seconds * 1000);
})();
