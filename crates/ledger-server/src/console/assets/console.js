// The console's script: the overview's live figures and charts (from /api/live, a
// server-sent-events stream) and an account's balance chart. Pages work without it; it
// only keeps them current. Charts: dygraphs (vendored, MIT; /assets/LICENSE.dygraphs).
"use strict";

const KEEP = 600; // samples: ten minutes at one a second

function chart(id, labels, rows, options) {
  const el = document.getElementById(id);
  const g = new Dygraph(el, rows, Object.assign({
    labels: labels,
    legend: "always",
    labelsSeparateLines: false,
    strokeWidth: 1.5,
    axisLabelFontSize: 11,
    drawCallback: function () { el.dataset.rendered = "true"; },
  }, options || {}));
  return g;
}

function setText(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value;
}

function liveOverview() {
  const samples = [];
  let charts = null;
  const series = {
    "chart-tps": [["time", "tx/s"], s => [s.tx_per_s]],
    "chart-latency": [["time", "p50 ms", "p99 ms"], s => [s.p50_ms, s.p99_ms]],
    "chart-fsyncs": [["time", "fsyncs/s"], s => [s.fsyncs_per_s]],
    "chart-gaps": [["time", "awaiting commit", "awaiting reads"],
      s => [s.computed - s.committed, s.committed - s.snapshot]],
  };
  function rows(pick) {
    return samples.map(s => [new Date(s.t)].concat(pick(s)));
  }
  function draw() {
    if (samples.length === 0) return;
    if (charts === null) {
      charts = {};
      for (const id in series) {
        const [labels, pick] = series[id];
        charts[id] = chart(id, labels, rows(pick), { includeZero: true });
      }
    } else {
      for (const id in series) charts[id].updateOptions({ file: rows(series[id][1]) });
    }
  }
  function figures(s) {
    setText("status", s.status);
    setText("computed", s.computed);
    setText("committed", s.committed);
    setText("snapshot", s.snapshot);
    setText("gap-commit", s.computed - s.committed);
    setText("gap-snapshot", s.committed - s.snapshot);
    setText("wal-bytes", s.wal_bytes);
    setText("wal-fsyncs", s.wal_fsyncs);
    setText("tx-per-s", Math.round(s.tx_per_s));
    setText("last-snapshot", s.last_snapshot_tx_id);
    setText("snapshots-written", s.snapshots_written);
  }
  function recent(list) {
    const body = document.querySelector("#recent tbody");
    if (!body) return;
    body.replaceChildren(...list.map(tx => {
      const tr = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "/tx/" + tx.id;
      link.textContent = tx.id;
      const cells = [link, tx.time, tx.outcome, tx.entries, tx.amount];
      cells.forEach((value, i) => {
        const td = document.createElement("td");
        if (i >= 3) td.className = "num";
        if (value instanceof Node) td.appendChild(value); else td.textContent = value;
        tr.appendChild(td);
      });
      return tr;
    }));
  }
  const events = new EventSource("/api/live");
  events.addEventListener("history", e => {
    samples.splice(0, samples.length, ...JSON.parse(e.data));
    draw();
  });
  events.addEventListener("sample", e => {
    const update = JSON.parse(e.data);
    samples.push(update.sample);
    if (samples.length > KEEP) samples.splice(0, samples.length - KEEP);
    figures(update.sample);
    recent(update.recent);
    draw();
  });
}

function balanceChart(el) {
  fetch("/api/accounts/" + el.dataset.account + "/balances")
    .then(r => r.ok ? r.json() : Promise.reject(r.status))
    .then(points => {
      if (points.length === 0) {
        el.textContent = "No balance changes yet.";
        el.dataset.rendered = "empty";
        return;
      }
      chart(el.id, ["transaction", "balance"], points, { stepPlot: true });
    })
    .catch(status => { el.textContent = "The balance chart could not be loaded (" + status + ")."; });
}

if (document.getElementById("chart-tps")) liveOverview();
const balance = document.getElementById("balance-chart");
if (balance) balanceChart(balance);
