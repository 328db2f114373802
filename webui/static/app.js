// FlowNexus web UI behaviour. Loaded as a file because the Content-Security-
// Policy forbids inline script; every handler is attached here.
(function () {
  "use strict";

  var csrf = function () {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  };

  // Every htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });

  // htmx does not swap error responses; show their message where the
  // answer would have gone.
  document.addEventListener("htmx:responseError", function (e) {
    var t = e.detail.target, msg = e.detail.xhr.statusText;
    try { msg = JSON.parse(e.detail.xhr.responseText).error || msg; } catch (_) {}
    if (t) {
      var p = document.createElement("p");
      p.className = "error";
      p.setAttribute("role", "alert");
      p.textContent = e.detail.xhr.status + ": " + msg;
      t.replaceChildren(p);
    }
  });

  var body = document.body;
  var devhead = document.querySelector(".devhead[data-endpoint]");
  var pageEndpoint = devhead ? devhead.dataset.endpoint : null;
  // "2026-11-24T23:57:54.78Z" → "2026-11-24 23:57:54Z"
  var when = function (t) { return (t || "").replace("T", " ").replace(/\.\d+/, ""); };
  var fire = function (name, detail) { body.dispatchEvent(new CustomEvent(name, { detail: detail })); };

  // ---- panels that follow the event stream ----
  // A panel lists the events it follows and how often it may reload, in
  // milliseconds: data-follow="fxdeployment:1000 fxvalue:5000", with
  // hx-trigger="fxrefresh". It reloads on the first event at once, then at
  // most once per interval, and always once more after the last event of
  // a burst, so it ends up showing the final state. htmx's own throttle
  // drops that last event, and htmx handles an event once per element, so
  // "throttle" and "delay" on the same event cannot be combined.
  function follow(el) {
    if (el.dataset.followBound) return;
    el.dataset.followBound = "1";
    (el.dataset.follow || "").split(/\s+/).forEach(function (spec) {
      var p = spec.split(":"), name = p[0], every = parseInt(p[1], 10) || 1000;
      if (!name) return;
      var last = 0, timer = null;
      var reload = function () {
        timer = null;
        last = Date.now();
        if (el.isConnected) htmx.trigger(el, "fxrefresh");
      };
      body.addEventListener(name, function () {
        if (!el.isConnected || timer) return;
        var wait = last + every - Date.now();
        if (wait <= 0) reload();
        else timer = setTimeout(reload, wait);
      });
    });
  }
  var followAll = function (root) {
    if (root.matches && root.matches("[data-follow]")) follow(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-follow]").forEach(follow);
  };
  followAll(document);
  document.addEventListener("htmx:load", function (e) { followAll(e.target); });

  // ---- live updates (server-sent events) ----
  // Each open stream holds one of the browser's six HTTP/1.1 connections
  // to the appliance, so a hidden tab closes its stream and catches up
  // when it is shown again; six tabs no longer starve the seventh.
  var es = null;
  function connect() {
    if (!body.dataset.live || !window.EventSource || es) return;
    var live = document.getElementById("live");
    es = new EventSource("/api/v1/events/stream");
    es.onopen = function () { if (live) live.classList.add("on"); body.dataset.sse = "open"; };
    es.onerror = function () { if (live) live.classList.remove("on"); body.dataset.sse = "error"; };
    var device = function (m) {
      var ev = JSON.parse(m.data);
      if (ev.kind !== "unregistered") touchLastSeen(ev);
      fire("fxdevice", ev);
      if (pageEndpoint === ev.endpoint) updateStatus(ev);
      enrollSeen(ev);
    };
    ["registered", "updated", "unregistered"].forEach(function (k) { es.addEventListener(k, device); });
    es.addEventListener("value", function (m) {
      var ev = JSON.parse(m.data);
      touchLastSeen(ev);
      if (pageEndpoint === ev.endpoint) {
        fire("fxvalue", ev);
        chartAppend(ev);
      }
    });
    es.addEventListener("deployment", function (m) { fire("fxdeployment", JSON.parse(m.data)); });
    es.addEventListener("operation", function (m) {
      var ev = JSON.parse(m.data);
      if (pageEndpoint === ev.endpoint) fire("fxop", ev);
    });
  }

  // "Last seen" follows what arrives, in the device list and the device
  // page header (the server's value is the same: the newest uplink).
  function touchLastSeen(ev) {
    if (!ev.endpoint || !ev.time) return;
    var cells = [];
    document.querySelectorAll("td.lastseen").forEach(function (td) { if (td.dataset.endpoint === ev.endpoint) cells.push(td); });
    if (pageEndpoint === ev.endpoint) { var h = document.getElementById("dev-lastseen"); if (h) cells.push(h); }
    var t = when(ev.time).replace(/Z$/, "") + "Z";
    cells.forEach(function (c) {
      if (!c.dataset.t || c.dataset.t < ev.time) { c.dataset.t = ev.time; c.textContent = t; }
    });
  }

  function updateStatus(ev) {
    var b = document.getElementById("dev-status");
    if (!b) return;
    var st = ev.kind === "unregistered" ? "offline" : "online";
    b.textContent = st;
    b.className = "badge " + st;
    var ls = document.getElementById("dev-lastseen");
    if (ls && ev.time) ls.textContent = when(ev.time);
  }

  // ---- enrollment wizard: wait for the first registration ----
  var wait = document.getElementById("enroll-wait");
  function enrollDone(at) {
    if (!wait || wait.classList.contains("done")) return;
    var ep = wait.dataset.endpoint;
    wait.classList.add("done");
    var s = document.getElementById("enroll-status");
    s.textContent = "";
    var b = document.createElement("b");
    b.textContent = ep;
    var a = document.createElement("a");
    a.href = "/devices/" + encodeURIComponent(ep);
    a.textContent = "Open the device page";
    s.append(b, " registered" + (at ? " at " + when(at) : "") + ". It is online. ", a);
    wait.dataset.registered = "1";
    var h = document.getElementById("enroll-wait-title");
    if (h) h.textContent = "The device is connected";
    var step = document.querySelector(".steps li.on");
    if (step) { step.classList.remove("on"); step.classList.add("done"); }
  }
  function enrollSeen(ev) {
    if (wait && ev.kind === "registered" && ev.endpoint === wait.dataset.endpoint) enrollDone(ev.time);
  }
  if (wait) {
    fetch("/api/v1/devices/" + encodeURIComponent(wait.dataset.endpoint), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) { if (j && j.device && j.device.online) enrollDone(j.device.lastSeen); })
      .catch(function () {});
  }

  // ---- device page: resource buttons fill and send the operation form ----
  document.addEventListener("click", function (e) {
    var btn = e.target.closest("button.act");
    if (!btn) return;
    var form = document.getElementById("op-form");
    if (!form) return;
    var row = btn.closest("tr");
    document.querySelectorAll("tr.busy").forEach(function (r) { r.classList.remove("busy"); });
    if (row) row.classList.add("busy");
    document.getElementById("op-type").value = btn.dataset.op;
    document.getElementById("op-path").value = btn.dataset.path;
    if (btn.dataset.op === "write") { document.getElementById("op-value").focus(); return; }
    if (btn.dataset.op === "write-attributes") { form.querySelector('input[name="pmin"]').focus(); return; }
    if (btn.dataset.op === "execute") {
      // Arguments first, then Send; a destructive one asks (opConfirm).
      opConfirm();
      var args = document.getElementById("op-args");
      args.focus();
      return;
    }
    form.requestSubmit();
  });

  // Executes marked destructive (data-destructive="3/0/4=Reboot;…") ask
  // before they go, however the form was filled: htmx reads hx-confirm
  // when it sends.
  function opConfirm() {
    var form = document.getElementById("op-form");
    if (!form) return;
    var type = document.getElementById("op-type").value;
    var path = document.getElementById("op-path").value.trim().replace(/^\/+/, "");
    var what = null;
    (form.dataset.destructive || "").split(";").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0 && kv.slice(0, i) === path) what = kv.slice(i + 1);
    });
    if (type === "execute" && what) {
      form.setAttribute("hx-confirm", what + " (" + path + ") on " + form.dataset.endpoint + "? This cannot be undone.");
    } else {
      form.removeAttribute("hx-confirm");
    }
    var send = form.querySelector('button[type="submit"]');
    if (send) send.textContent = type === "execute" ? "Execute" : "Send";
  }
  ["op-type", "op-path"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) { el.addEventListener("input", opConfirm); el.addEventListener("change", opConfirm); }
  });

  // The object tree refreshes with new values; objects a user opened or
  // closed stay so.
  var folded = {};
  document.addEventListener("click", function (e) {
    var sm = e.target.closest && e.target.closest("details.object[data-object] > summary");
    if (sm) folded[sm.parentElement.dataset.object] = !sm.parentElement.open; // the click is about to toggle it
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target.id !== "objects-tree") return;
    e.detail.target.querySelectorAll("details.object[data-object]").forEach(function (d) {
      if (d.dataset.object in folded) d.open = folded[d.dataset.object];
    });
  });

  // The answer lands in the operation card; mark the row it was for, so
  // that a click deep in the tree gets feedback where it happened.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target.id !== "op-result") return;
    document.querySelectorAll("tr.busy").forEach(function (r) {
      r.classList.remove("busy");
      r.classList.add("done");
      setTimeout(function () { r.classList.remove("done"); }, 1500);
    });
  });

  // ---- charts (uPlot) ----
  var chartEl = document.getElementById("chart");
  var plot = null, series = { t: [], v: [] }, chartPath = null, rangeHours = 24;

  function loadChart() {
    if (!chartEl || !window.uPlot) return;
    chartPath = document.getElementById("chart-path").value;
    var to = new Date(), from = new Date(to.getTime() - rangeHours * 3600e3);
    var q = "path=" + encodeURIComponent(chartPath) + "&from=" + encodeURIComponent(from.toISOString().replace(/\.\d+Z$/, "Z")) +
      "&to=" + encodeURIComponent(to.toISOString().replace(/\.\d+Z$/, "Z"));
    var base = "/api/v1/devices/" + encodeURIComponent(chartEl.dataset.endpoint);
    document.getElementById("chart-csv").href = base + "/telemetry.csv?" + q;
    fetch(base + "/telemetry?" + q + "&max=1000", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        series = { t: [], v: [] };
        (j.points || []).forEach(function (p) {
          var v = typeof p.v === "number" ? p.v : parseFloat(p.v);
          if (!isNaN(v)) { series.t.push(Date.parse(p.t) / 1000); series.v.push(v); }
        });
        draw();
      });
  }

  function draw() {
    var info = document.getElementById("chart-info");
    info.textContent = series.t.length + " points";
    chartEl.dataset.points = String(series.t.length);
    var data = [series.t, series.v];
    if (plot) { plot.setData(data); return; }
    var w = chartEl.clientWidth || 800;
    plot = new uPlot({
      width: w, height: 300,
      scales: { x: { time: true } },
      series: [{}, { label: chartPath, stroke: "#1f6feb", width: 2, fill: "rgba(31,111,235,0.08)", points: { show: series.t.length < 60 } }],
      axes: [{}, { size: 60 }]
    }, data, chartEl);
  }

  function chartAppend(ev) {
    if (!plot || ev.path !== chartPath) return;
    var v = typeof ev.value === "number" ? ev.value : parseFloat(ev.value);
    if (isNaN(v)) return;
    series.t.push(Date.parse(ev.time) / 1000);
    series.v.push(v);
    draw();
  }

  if (chartEl) {
    document.getElementById("chart-path").addEventListener("change", function () {
      if (plot) { plot.destroy(); plot = null; }
      loadChart();
    });
    document.getElementById("chart-ranges").addEventListener("click", function (e) {
      var b = e.target.closest("button[data-range]");
      if (!b) return;
      this.querySelectorAll("button").forEach(function (x) { x.classList.toggle("on", x === b); });
      rangeHours = parseInt(b.dataset.range, 10);
      loadChart();
    });
    window.addEventListener("resize", function () { if (plot) plot.setSize({ width: chartEl.clientWidth, height: 300 }); });
  }

  document.addEventListener("visibilitychange", function () {
    if (!body.dataset.live || !window.EventSource) return;
    if (document.hidden) {
      if (es) { es.close(); es = null; }
      body.dataset.sse = "paused";
      var live = document.getElementById("live");
      if (live) live.classList.remove("on");
      return;
    }
    if (es) return;
    connect();
    // Refresh what may have changed while the tab was hidden.
    fire("fxdevice", {}); fire("fxvalue", {}); fire("fxop", {});
    loadChart();
  });

  // ---- forms that ask first (restart, destructive executes) ----
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) e.preventDefault();
  }, true);

  // ---- restart: ask for it once this page is loaded, then wait until a
  // new process answers (another start time) and go on ----
  var restarting = document.getElementById("restarting");
  if (restarting) {
    var status = document.getElementById("restart-status");
    var poll = function () {
      fetch("/healthz", { cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (j) {
          if (j && j.started && j.started !== restarting.dataset.started) { location.href = "/system?flash=" + encodeURIComponent("FlowNexus restarted."); return; }
          setTimeout(poll, 500);
        })
        .catch(function () { setTimeout(poll, 500); });
    };
    fetch("/api/v1/system/restart", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } })
      .then(function (r) {
        if (r.status === 202) { restarting.dataset.asked = "1"; poll(); return; }
        return r.json().then(function (j) { status.textContent = "Not restarted: " + (j.error || r.status); status.className = "error"; });
      })
      .catch(function () { poll(); });
  }

  var start = function () { connect(); loadChart(); };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
