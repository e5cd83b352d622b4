// One job: live curves from its event stream, the per-layer table, the
// pattern library, the storage bar, the rate search, the task timeline,
// the spec, the artifacts, cancel and retry.
import { api, download, get } from "../api.js";
import { lineChart, COLORS } from "../charts.js";
import { curves, followJob } from "../events.js";
import { p50, profilesOf, reportOf } from "../reports.js";
import { bytes, clear, duration, h, int, jobDuration, num, pct, rate, showMessage, specSummary, TERMINAL, fill } from "../util.js";
import { stateCell } from "./jobs.js";

const POLL_MS = 2000;

function section(title, id, ...kids) {
  return h("section", { class: "card", id, "aria-labelledby": id + "-h" }, h("h2", { id: id + "-h" }, title), ...kids);
}

export function layerOp(l) {
  const s = l.shape || [];
  if ((s[2] || 1) * (s[3] || 1) > 1) return `conv2d ${s[2]}×${s[3]}`;
  return /conv/i.test(l.name) ? "conv2d 1×1" : "linear";
}

function structure(l) {
  const st = l.structure || {};
  const parts = [];
  if (l.prune) parts.push(l.prune);
  if (st.zero_filters) parts.push(`${st.zero_filters} filters off`);
  if (st.zero_channels) parts.push(`${st.zero_channels} channels off`);
  if (st.kernels && st.kernels !== st.kernels_kept) parts.push(`${st.kernels_kept}/${st.kernels} kernels`);
  return parts.join(", ") || "dense";
}

const FORMATS = ["dense", "csr", "bitmask", "fkw", "quantized"];

// The per-layer latency column comes from one device's profile (the one
// with the best compressed p50, at its first thread count): bench's mean
// time per run of each compiled layer and its share of the layers' total,
// matched to the report's layers by name.
function layerTimes(profs) {
  let best = null;
  for (const p of profs || []) {
    const r = (p.results || [])[0];
    if (p50(r) !== null && (!best || p50(r) < p50(best.r))) best = { p, r };
  }
  if (!best) return null;
  const byName = new Map(((best.r.compressed || {}).layers || []).map((l) => [l.name, l]));
  return { device: (best.p.device || {}).name || "?", threads: best.r.threads, byName };
}

function layerTable(rep, profs) {
  const times = layerTimes(profs);
  const lat = !!times && rep.layers.some((l) => times.byName.has(l.name));
  const latOf = (l) => (lat ? times.byName.get(l.name) || null : null);
  const head = ["Layer", "Op", "Shape", "Params", "Non-zeros", "Sparsity", "Rate", "Structure", "Bits",
    ...FORMATS.map((f) => "Storage " + f), "FLOPs dense", "FLOPs effective", ...(lat ? [`Latency (${times.device}, ${times.threads} thread${times.threads === 1 ? "" : "s"})`, "Share"] : [])];
  const rows = rep.layers.map((l) => {
    const sb = l.storage_bytes || {}, fl = l.flops || {};
    return h("tr", { "data-layer": l.name },
      h("th", { scope: "row", "data-key": "name" }, l.name),
      h("td", { "data-key": "op" }, layerOp(l)),
      h("td", { "data-key": "shape" }, (l.shape || []).join("×")),
      h("td", { class: "num", "data-key": "params" }, int(l.params)),
      h("td", { class: "num", "data-key": "nonzeros" }, int(l.nonzeros)),
      h("td", { class: "num", "data-key": "sparsity" }, l.params ? pct(1 - l.nonzeros / l.params, 1) : "—"),
      h("td", { class: "num", "data-key": "rate" }, rate(l.rate)),
      h("td", { "data-key": "structure" }, structure(l)),
      h("td", { class: "num", "data-key": "bits" }, String(l.bits ?? "—")),
      FORMATS.map((f) => h("td", { class: "num", "data-key": "storage_" + f }, sb[f] === undefined ? "—" : bytes(sb[f]))),
      h("td", { class: "num", "data-key": "flops_dense" }, int(fl.dense)),
      h("td", { class: "num", "data-key": "flops_effective" }, int(fl.effective)),
      lat ? [h("td", { class: "num", "data-key": "latency" }, latOf(l) ? num(latOf(l).ms, 4) + " ms" : "—"),
        h("td", { class: "num", "data-key": "latency_share" }, latOf(l) ? pct(latOf(l).share, 1) : "—")] : null);
  });
  const t = rep.totals || {};
  rows.push(h("tr", { class: "total" }, h("th", { scope: "row" }, "total"), h("td"), h("td"),
    h("td", { class: "num" }, int(t.params)), h("td", { class: "num" }, int(t.nonzeros)),
    h("td", { class: "num" }, t.params ? pct(1 - t.nonzeros / t.params, 1) : "—"), h("td", { class: "num" }, rate(t.rate)),
    h("td"), h("td"), h("td", { class: "num" }, bytes(t.storage_dense_bytes)), h("td", { colspan: FORMATS.length - 1, class: "num" }, `best per layer: ${bytes(t.storage_bytes)} (${rate(t.storage_rate)})`),
    h("td", { class: "num" }, int(t.flops_dense)), h("td", { class: "num" }, int(t.flops_effective)), lat ? [h("td"), h("td")] : null));
  return h("div", { class: "table-wrap" }, h("table", { id: "layers", class: "layers" },
    h("thead", {}, h("tr", {}, head.map((x) => h("th", { scope: "col" }, x)))), h("tbody", {}, rows)));
}

function storageBar(rep) {
  const tot = {};
  for (const f of FORMATS) {
    const have = rep.layers.filter((l) => l.storage_bytes && l.storage_bytes[f] !== undefined);
    if (!have.length) continue;
    // A format missing on some layers (FKW is for 3x3 kernels only) counts their best other format.
    tot[f] = rep.layers.reduce((a, l) => a + ((l.storage_bytes || {})[f] ?? Math.min(...Object.values(l.storage_bytes || { x: 0 }))), 0);
  }
  const max = Math.max(...Object.values(tot), 1);
  return h("div", { class: "bars", id: "storage" }, Object.entries(tot).map(([f, v]) =>
    h("div", { class: "bar-row", "data-format": f },
      h("span", { class: "bar-label" }, f),
      h("span", { class: "bar-track" }, h("span", { class: "bar fmt-" + f, style: { width: (100 * v) / max + "%" } })),
      h("span", { class: "bar-value" }, `${bytes(v)} (${rate(tot.dense / v)})`))));
}

function patternGrid(mask) {
  const bits = parseInt(mask, 16);
  return h("div", { class: "pattern", "aria-label": "pattern " + mask },
    Array.from({ length: 9 }, (_, i) => h("span", { class: (bits >> i) & 1 ? "on" : "off" })));
}

function patternLibrary(rep) {
  const layers = rep.layers.filter((l) => l.pattern_histogram && Object.keys(l.pattern_histogram).length);
  if (!layers.length) return null;
  return section("Pattern library", "patterns", layers.map((l) => {
    const entries = Object.entries(l.pattern_histogram).sort((a, b) => b[1] - a[1]);
    return h("div", { class: "pattern-layer" }, h("h3", {}, l.name),
      h("div", { class: "patterns" }, entries.map(([m, n]) => h("figure", { class: "pattern-cell" }, patternGrid(m), h("figcaption", {}, `${int(n)} kernels`)))));
  }));
}

function autoSection(rep, charts) {
  const a = rep.auto;
  if (!a || !a.grid) return null;
  const s = section("Automatic rate search", "auto",
    h("p", {}, `Target ${rate(a.target_rate)} on ${a.objective}, achieved ${rate(a.achieved_rate)} (sensitivity on ${int(a.sample_images)} images).`));
  const layers = a.layers || [];
  const c = lineChart(s, { title: "Loss increase by layer rate", xLabel: "rate", yLabel: "loss increase", intX: false, series: layers.map((l) => l.name + (l.rate ? ` (chose ${l.rate.toFixed(1)}×)` : "")), id: "auto" });
  c.update([a.grid, ...layers.map((l) => l.loss_increase || [])]);
  charts.push(c);
  return s;
}

// One row per device and thread count: the compressed and dense bundles'
// p50 latency on that device and the speed-up (dense p50 / compressed p50).
function deviceTable(profs) {
  if (!profs || !profs.length) return null;
  const ms = (x) => (x === null ? "—" : num(x, 3) + " ms");
  const rows = [];
  for (const p of [...profs].sort((a, b) => String((a.device || {}).name).localeCompare(String((b.device || {}).name))))
    for (const r of p.results || [])
      rows.push(h("tr", { "data-device": (p.device || {}).name || "", "data-threads": String(r.threads) },
        h("th", { scope: "row", "data-key": "device" }, (p.device || {}).name || (p.device || {}).id || "?"),
        h("td", { class: "num", "data-key": "threads" }, String(r.threads)),
        h("td", { class: "num", "data-key": "compressed" }, ms(p50(r))),
        h("td", { class: "num", "data-key": "dense" }, ms(p50(r, "dense"))),
        h("td", { class: "num", "data-key": "speedup" }, typeof r.speedup === "number" ? num(r.speedup, 2) + "×" : "—"),
        h("td", { class: "num", "data-key": "rss" }, r.compressed && typeof r.compressed.peak_rss_kb === "number" ? bytes(1024 * r.compressed.peak_rss_kb) : "—")));
  return section("Devices", "devices-sec",
    h("p", { class: "muted" }, "The compiled model timed on each profiling device (batch 1, p50 latency)."),
    h("div", { class: "table-wrap" }, h("table", { id: "device-latency" },
      h("thead", {}, h("tr", {}, ["Device", "Threads", "Compressed", "Dense", "Speed-up", "Peak RSS"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows))));
}

function timeline(job) {
  return h("ol", { class: "timeline", id: "timeline" }, (job.tasks || []).map((t) =>
    h("li", { class: "task-step " + t.state, "data-task": t.type },
      h("div", { class: "task-head" }, h("strong", {}, t.type), h("span", { class: "badge " + t.state }, t.state), h("span", { class: "muted" }, ` attempt ${t.attempts}/${t.max_attempts}`)),
      (t.errors || []).length ? h("ul", { class: "errors" }, t.errors.map((e) => h("li", {}, `attempt ${e.attempt}${e.kind && e.kind !== "error" ? " (" + e.kind + ")" : ""}: ${e.message}`))) : null)));
}

export function renderJob(main, id) {
  let job = null, stopped = false, timer = null, follower = null, report = null, profs = [], artifactsShown = false;
  const charts = [];
  const title = h("h1", {}, "Job");
  const actions = h("div", { class: "actions" });
  const summary = h("div", { class: "summary", id: "summary" });
  const curvesBox = h("div", { class: "charts", id: "curves" });
  const live = h("p", { class: "muted", id: "stream-state" }, "connecting to the event stream…");
  const reportBox = h("div", { id: "report-box" }, h("p", { class: "muted" }, "The per-layer report appears when the compression finishes."));
  const timelineBox = h("div");
  const specBox = h("pre", { class: "spec", id: "spec", tabindex: "0" });
  const artBox = h("div", { id: "artifacts" });
  fill(main, 
    h("div", { class: "toolbar" }, h("a", { href: "#/jobs" }, "← Jobs"), title, actions),
    summary,
    section("Curves", "curves-sec", live, curvesBox),
    reportBox,
    section("Tasks", "tasks", timelineBox),
    section("Spec", "spec-sec", specBox),
    section("Artifacts", "artifacts-sec", artBox));

  const mk = (o) => { const c = lineChart(curvesBox, o); charts.push(c); return c; };
  const cLoss = mk({ title: "Training loss", xLabel: "epoch", series: ["loss"], id: "loss" });
  const cAcc = mk({ title: "Accuracy", xLabel: "epoch", series: ["train", "test"], id: "accuracy" });
  const cSp = mk({ title: "Sparsity", xLabel: "epoch", series: ["sparsity"], id: "sparsity" });
  const cLr = mk({ title: "Learning rate", xLabel: "epoch", series: ["lr"], id: "lr" });
  let cRes = null, cRho = null, layerKey = "";

  function onEvents(hist) {
    const c = curves(hist.events);
    cLoss.update(c.loss);
    cAcc.update(c.accuracy);
    cSp.update(c.sparsity);
    cLr.update(c.lr);
    const key = c.layerNames.join(",");
    if (c.layerNames.length && key !== layerKey) {
      layerKey = key;
      for (const x of [cRes, cRho]) if (x) { x.destroy(); x.el.remove(); charts.splice(charts.indexOf(x), 1); }
      cRes = mk({ title: "ADMM primal residual ||W − Z|| / ||W|| per layer", xLabel: "ADMM iteration", series: c.layerNames, id: "residual", logY: true });
      cRho = mk({ title: "rho per layer", xLabel: "ADMM iteration", series: c.layerNames, id: "rho" });
    }
    if (cRes) { cRes.update(c.residual); cRho.update(c.rho); }
    live.textContent = `${c.epochs.length} epochs, ${hist.events.length} events (last id ${hist.lastId})` + (hist.live ? ", live" : ", complete");
    live.dataset.lastId = String(hist.lastId);
    live.dataset.resumedFrom = String(hist.resumedFrom);
    // A state event may change the job: look at once instead of at the next poll.
    if (hist.events.length && hist.events[hist.events.length - 1].t === "st") refresh();
  }

  function drawJob() {
    title.textContent = job.name;
    const sp = specSummary(job.params && job.params.spec);
    fill(summary, 
      h("div", { class: "kv" }, h("span", {}, "State"), stateCell(job)),
      h("div", { class: "kv" }, h("span", {}, "Id"), h("code", {}, job.id)),
      h("div", { class: "kv" }, h("span", {}, "Method"), sp.method),
      h("div", { class: "kv" }, h("span", {}, "Target"), sp.target),
      h("div", { class: "kv" }, h("span", {}, "Duration"), duration(jobDuration(job))),
      report ? [
        h("div", { class: "kv" }, h("span", {}, "Accuracy"), `${pct(report.dense_test_accuracy)} → ${pct(report.final_test_accuracy)}`),
        h("div", { class: "kv" }, h("span", {}, "Rate"), rate(report.totals.rate)),
        h("div", { class: "kv" }, h("span", {}, "Storage rate"), rate(report.totals.storage_rate)),
      ] : null,
      job.error ? h("div", { class: "kv error-text" }, h("span", {}, "Error"), job.error) : null);
    clear(actions);
    if (!TERMINAL.has(job.state)) actions.append(h("button", { type: "button", id: "cancel", class: "danger", onclick: () => act("cancel") }, "Cancel"));
    if (job.state === "failed" || job.state === "cancelled") actions.append(h("button", { type: "button", id: "retry", onclick: () => act("retry") }, "Retry"));
    actions.append(h("a", { class: "button", href: "#/compare?ids=" + encodeURIComponent(job.id) }, "Compare…"));
    fill(timelineBox, timeline(job));
    specBox.textContent = JSON.stringify(job.params || {}, null, 2);
  }

  async function act(what) {
    if (what === "cancel" && !confirm(`Cancel job ${job.name}?`)) return;
    try {
      job = await api("POST", `/api/v1/jobs/${encodeURIComponent(id)}/${what}`, {});
      showMessage(what === "cancel" ? "Cancel requested: the worker stops at its next heartbeat." : "Retry queued.", "info");
      drawJob();
      if (what === "retry") startFollow();
    } catch (e) {
      if (e.status !== 401) showMessage(`Could not ${what} the job: ${e.message}`);
    }
  }

  async function drawReport() {
    const r = await reportOf(job, true);
    const p = await profilesOf(job, true);
    if (!r || stopped || (r === report && (!p || p === profs || (!p.length && !profs.length)))) return;
    report = r;
    if (p) profs = p;
    fill(reportBox, 
      section("Layers", "layers-sec", layerTable(r, profs)),
      deviceTable(profs),
      section("Storage by format", "storage-sec", h("p", { class: "muted" }, "All constrained layers stored in one format (dense is 32-bit floats)."), storageBar(r)),
      patternLibrary(r), autoSection(r, charts));
    drawJob();
  }

  async function drawArtifacts() {
    const a = await get(`/api/v1/jobs/${encodeURIComponent(id)}/artifacts`);
    const items = a.items.filter((x) => x.kind !== "checkpoint");
    const ckpt = a.items.length - items.length;
    fill(artBox, h("ul", { class: "artifacts" }, items.map((x) => h("li", {},
      h("button", { type: "button", class: "link", "data-kind": x.kind, onclick: () => download(`/api/v1/artifacts/${x.sha256}`, `${job.name}-${x.kind}-${x.sha256.slice(0, 8)}${ext(x.kind)}`).catch((e) => showMessage("Download failed: " + e.message)) }, `${x.kind}`),
      h("span", { class: "muted" }, ` ${bytes(x.size)} · ${x.sha256.slice(0, 12)}…`)))),
    ckpt ? h("p", { class: "muted" }, `${ckpt} checkpoints not listed.`) : null);
    if (!items.length && !ckpt) artBox.append(h("p", { class: "muted" }, "No artifacts yet."));
  }

  let refreshing = false;
  async function refresh() {
    if (refreshing || stopped) return;
    refreshing = true;
    clearTimeout(timer);
    try {
      job = await get(`/api/v1/jobs/${encodeURIComponent(id)}`);
      drawJob();
      if (job.outputs && job.outputs.report) await drawReport();
      if (TERMINAL.has(job.state) && !artifactsShown) { artifactsShown = true; await drawArtifacts(); }
      if (!TERMINAL.has(job.state)) artifactsShown = false;
    } catch (e) {
      if (e.status === 404) { fill(main, h("p", { class: "error-text" }, e.message), h("a", { href: "#/jobs" }, "Back to jobs")); stopped = true; }
      else if (e.status !== 401) showMessage("Could not load the job: " + e.message);
    } finally {
      refreshing = false;
    }
    if (!stopped) timer = setTimeout(refresh, job && TERMINAL.has(job.state) ? POLL_MS * 5 : POLL_MS);
  }

  function startFollow() {
    if (follower) follower.stop();
    follower = followJob(id, onEvents, (e) => { if (e.status !== 401) showMessage("Event stream: " + e.message); });
  }
  refresh();
  startFollow();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (follower) follower.stop();
    for (const c of charts) c.destroy();
  };
}

function ext(kind) {
  return { onnx: ".onnx", report: ".json", compile_report: ".json", profile: ".json", code: ".tar", model: ".safetensors" }[kind] || ".bin";
}

export { COLORS };
