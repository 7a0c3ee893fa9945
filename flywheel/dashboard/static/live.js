// Live status for the runs, run and node pages: polls a small JSON (or log) endpoint
// while something is going and updates the page in place. No libraries; data-*
// attributes on <main> say what to poll.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  if (!main) return;
  var mode = main.getAttribute("data-live");
  var url = main.getAttribute("data-poll");
  var DONE = ["COMPLETE", "FAILED", "CACHED", "LOST", "CANCELED"];
  var PERIOD_MS = 1500;

  function setBadge(container, state) {
    if (!container) return;
    var badge = container.querySelector(".badge");
    if (!badge || badge.getAttribute("data-state") === state) return;
    badge.className = "badge state-" + state;
    badge.setAttribute("data-state", state);
    badge.textContent = state.toLowerCase();
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function rowsByKey(attr) {
    var rows = {};
    document.querySelectorAll("tr[" + attr + "]").forEach(function (tr) { rows[tr.getAttribute(attr)] = tr; });
    return rows;
  }

  function schedule(fn) { window.setTimeout(fn, PERIOD_MS); }

  function pollRuns() {
    var firstPage = main.getAttribute("data-first-page") === "yes";
    var rows = rowsByKey("data-run");
    var anyRunning = Object.keys(rows).some(function (id) {
      var badge = rows[id].querySelector(".badge");
      return badge && badge.getAttribute("data-state") === "RUNNING";
    });
    if (!firstPage && !anyRunning) return;
    document.querySelector(".live-dot") && document.querySelector(".live-dot").classList.add("on");
    fetch(url, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (data) {
      var changed = false;
      data.runs.forEach(function (run) {
        var tr = rows[run.run_id];
        if (!tr) { if (firstPage) changed = true; return; }
        setBadge(tr.querySelector(".state-cell"), run.state);
        setText(tr.querySelector(".duration"), run.duration);
      });
      if (changed) { window.location.reload(); return; }
      schedule(pollRuns);
    }).catch(function () { schedule(pollRuns); });
  }

  function pollRun() {
    if (DONE.indexOf(main.getAttribute("data-run-state")) >= 0) return;
    var known = (main.getAttribute("data-nodes") || "").split(",").filter(Boolean);
    fetch(url, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (data) {
      var rows = rowsByKey("data-node");
      var names = Object.keys(data.nodes);
      var grew = names.some(function (n) { return known.indexOf(n) < 0; });
      names.forEach(function (name) {
        var node = data.nodes[name];
        var tr = rows[name];
        if (tr) {
          setBadge(tr.querySelector(".state-cell"), node.state);
          setText(tr.querySelector(".duration"), node.duration);
          setText(tr.querySelector(".cache"), node.cached ? "hit" : "miss");
        }
        document.querySelectorAll("g[data-node]").forEach(function (g) {
          if (g.getAttribute("data-node") !== name) return;
          var cls = g.getAttribute("class").replace(/state-\S+/, "state-" + node.state);
          g.setAttribute("class", cls);
        });
      });
      setBadge(document.querySelector(".run-state"), data.run.state);
      setText(document.querySelector(".run-duration"), data.run.duration);
      main.setAttribute("data-run-state", data.run.state);
      // New nodes appeared, or the run ended: reload once for the full picture (graph, outputs, reports).
      if (grew || DONE.indexOf(data.run.state) >= 0) { window.location.reload(); return; }
      schedule(pollRun);
    }).catch(function () { schedule(pollRun); });
  }

  function pollLog() {
    if (main.getAttribute("data-node-state") !== "RUNNING") return;
    fetch(url, { cache: "no-store" }).then(function (r) { return r.text(); }).then(function (text) {
      var log = document.getElementById("log");
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      setText(log, text || "(empty log)");
      if (atBottom) log.scrollTop = log.scrollHeight;
      return fetch(window.location.pathname.replace(/\/nodes\/[^/]+$/, "").replace(/^\/runs\//, "/api/runs/"), { cache: "no-store" });
    }).then(function (r) { return r.json(); }).then(function (data) {
      var name = decodeURIComponent(window.location.pathname.split("/").pop());
      var node = data.nodes[name];
      if (node && node.state !== "RUNNING") { window.location.reload(); return; }
      schedule(pollLog);
    }).catch(function () { schedule(pollLog); });
  }

  if (mode === "runs") schedule(pollRuns);
  else if (mode === "run") schedule(pollRun);
  else if (mode === "node") schedule(pollLog);
})();
