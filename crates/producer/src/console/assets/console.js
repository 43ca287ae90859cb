// longhaul console: live updates over server-sent events, and fresh relative times.
// Progressive enhancement only: every page works without this script, by reload.
(function () {
  "use strict";
  var body = document.body;

  // "3m 05s ago" next to each time, kept current.
  function age(s) {
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    if (s < 172800) return Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }
  function ages() {
    var now = Date.now();
    document.querySelectorAll("time[datetime] .ago").forEach(function (el) {
      var t = Date.parse(el.parentNode.getAttribute("datetime"));
      if (isNaN(t)) return;
      var s = Math.round((now - t) / 1000);
      el.textContent = " · " + (Math.abs(s) < 1 ? "just now" : s > 0 ? age(s) + " ago" : "in " + age(-s));
    });
  }
  setInterval(ages, 15000);

  // Patch `from` into the shape of `to`, keeping the nodes that stay (focus, selection and
  // references held by tests or assistive technology survive an update).
  function key(n) {
    if (n.nodeType !== 1) return n.nodeName;
    return n.nodeName + "#" + (n.id || n.getAttribute("data-queue") || n.getAttribute("data-kind") ||
      n.getAttribute("data-tenant") || n.getAttribute("data-job-id") || n.getAttribute("data-entry") ||
      n.getAttribute("data-attempt") || n.getAttribute("data-operation") || "");
  }
  function morph(from, to) {
    var i, a;
    for (i = from.attributes.length - 1; i >= 0; i--) {
      a = from.attributes[i];
      if (a.name !== "open" && !to.hasAttribute(a.name)) from.removeAttribute(a.name);
    }
    for (i = 0; i < to.attributes.length; i++) {
      a = to.attributes[i];
      if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
    }
    if (from.nodeName === "PROGRESS") from.value = Number(to.getAttribute("value"));
    var f = Array.prototype.slice.call(from.childNodes), t = Array.prototype.slice.call(to.childNodes);
    for (i = 0; i < t.length; i++) {
      var x = f[i], y = t[i];
      if (!x) from.appendChild(y);
      else if (key(x) !== key(y)) from.replaceChild(y, x);
      else if (x.nodeType === 1) morph(x, y);
      else if (x.nodeValue !== y.nodeValue) x.nodeValue = y.nodeValue;
    }
    for (i = t.length; i < f.length; i++) from.removeChild(f[i]);
  }

  var status = document.getElementById("live-status");
  function say(text) { if (status) status.textContent = text; }

  var src = body.getAttribute("data-live-src");
  if (!src || !window.EventSource) return;
  var es = new EventSource(src);
  es.onopen = function () { body.setAttribute("data-live-connected", "true"); say(""); };
  es.addEventListener("swap", function (e) {
    var parts = JSON.parse(e.data);
    Object.keys(parts).forEach(function (name) {
      var el = document.querySelector('[data-live="' + name + '"]');
      if (!el) return;
      var next = el.cloneNode(false);
      next.innerHTML = parts[name];
      morph(el, next);
    });
  });
  es.addEventListener("problem", function (e) { say(e.data); });
  es.addEventListener("end", function () { es.close(); });
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED) {
      body.setAttribute("data-live-connected", "false");
      say("Live updates stopped: reload the page to resume them.");
    } else {
      say("Reconnecting live updates…");
    }
  };
  window.addEventListener("pagehide", function () { es.close(); });
  // Back to a page the browser kept (back-forward cache): its stream was closed; start afresh.
  window.addEventListener("pageshow", function (e) { if (e.persisted) { window.location.reload(); } });
})();
