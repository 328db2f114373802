// Live tail of device logs: new lines from /api/v1/logs/stream go to the top
// of the log table when they match its filters. Text goes in with
// textContent only, so a line's HTML or script is shown, never run.
(function () {
  "use strict";
  var ranks = { emerg: 0, alert: 1, crit: 2, err: 3, warning: 4, notice: 5, info: 6, debug: 7 };
  var classes = ["generic", "system", "security", "event", "trace", "panic", "charging"];
  var maxRows = 500;
  var es = null;
  var body = document.body;

  function table() { return document.getElementById("log-table"); }

  function matches(t, ep, l) {
    var d = t.dataset;
    if (d.device && ep !== d.device) return false;
    if (d.severity) {
      if (!(l.severity in ranks) || ranks[l.severity] > ranks[d.severity]) return false;
    }
    if (d["class"] !== "" && String(l["class"]) !== d["class"]) return false;
    if (d.q && l.line.toLowerCase().indexOf(d.q.toLowerCase()) < 0) return false;
    return true;
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function when(t) {
    var d = new Date(t);
    if (isNaN(d.getTime())) return t;
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function add(ev) {
    var t = table();
    if (!t || t.dataset.live !== "1") return;
    var rows = document.getElementById("log-rows");
    var lines = ev.logs || [];
    var added = 0;
    for (var i = 0; i < lines.length; i++) {
      var l = lines[i];
      if (!matches(t, ev.endpoint, l)) continue;
      var tr = document.createElement("tr");
      tr.dataset.id = l.id;
      tr.className = "sev-" + (l.severity || "") + " fresh";
      cell(tr, when(l.t), "mono");
      if (t.dataset.sitewide) {
        var td = document.createElement("td");
        var a = document.createElement("a");
        a.href = "/devices/" + encodeURIComponent(ev.endpoint) + "#logs";
        a.textContent = ev.endpoint;
        td.appendChild(a);
        tr.appendChild(td);
      }
      cell(tr, l["class"] < classes.length ? classes[l["class"]] : String(l["class"]));
      cell(tr, l.severity || "");
      cell(tr, l.line, "mono logline");
      rows.insertBefore(tr, rows.firstChild);
      added++;
    }
    if (ev.skipped > 0) {
      var note = document.createElement("tr");
      note.className = "skipped";
      var c = cell(note, ev.skipped + " more lines arrived at once; reload or page back to see them");
      c.colSpan = t.dataset.sitewide ? 5 : 4;
      rows.insertBefore(note, rows.firstChild);
    }
    while (rows.children.length > maxRows) rows.removeChild(rows.lastChild);
    if (added > 0) {
      var empty = document.getElementById("log-empty");
      if (empty) empty.remove();
      t.dataset.count = String(Number(t.dataset.count || 0) + added);
    }
  }

  function connect() {
    var t = table();
    if (!t || t.dataset.live !== "1" || !window.EventSource || es || !body.dataset.live) return;
    var url = "/api/v1/logs/stream";
    if (t.dataset.endpoint) url += "?endpoint=" + encodeURIComponent(t.dataset.endpoint);
    es = new EventSource(url);
    es.onopen = function () { body.dataset.logsse = "open"; };
    es.onerror = function () { body.dataset.logsse = "error"; };
    es.addEventListener("log", function (m) { add(JSON.parse(m.data)); });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (es) { es.close(); es = null; }
      body.dataset.logsse = "paused";
      return;
    }
    connect();
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect); else connect();
})();
