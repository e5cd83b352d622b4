// The jobs list: sortable, filterable, updated live by polling the list
// (one request every 2 s, whatever the number of jobs), with each finished
// job's report fetched once for its accuracies and rates, and each profiled
// job's device profiles once its profile tasks are done (best latency).
import { ApiError, get } from "../api.js";
import { clear, duration, h, jobDuration, pct, rate, showMessage, specSummary, TERMINAL, fill } from "../util.js";
import { bestLatency, profilesOf, reportOf } from "../reports.js";

const POLL_MS = 2000;

const COLS = [
  { key: "select", label: "", sort: false },
  { key: "name", label: "Name" },
  { key: "model", label: "Model" },
  { key: "method", label: "Method" },
  { key: "target", label: "Target" },
  { key: "bits", label: "Bits" },
  { key: "state", label: "State" },
  { key: "acc_before", label: "Acc. before" },
  { key: "acc_after", label: "Acc. after" },
  { key: "rate", label: "Rate" },
  { key: "storage_rate", label: "Storage rate" },
  { key: "latency", label: "Best latency" },
  { key: "duration", label: "Duration" },
];

export function progressOf(job) {
  const p = job.progress || {};
  const leased = (job.tasks || []).find((t) => t.state === "leased");
  const task = leased ? leased.type : job.state === "running" ? p.task : null;
  let frac = typeof p.pct === "number" ? p.pct / 100 : p.epochs ? p.epoch / p.epochs : null;
  if (job.state === "succeeded") frac = 1;
  const done = (job.tasks || []).filter((t) => t.state === "succeeded").length;
  const total = (job.tasks || []).length;
  // The bar is the whole job: finished tasks, plus the running one's share.
  const overall = job.state === "succeeded" ? 1 : total ? (done + (task && p.task === task && frac !== null ? Math.min(1, frac) : 0)) / total : null;
  return { task, frac: overall, done, total };
}

export function stateCell(job) {
  const pr = progressOf(job);
  const bar = h("progress", { max: 1, value: pr.frac === null ? 0 : Math.min(1, pr.frac), "aria-label": "progress of " + (pr.task || job.state) });
  return h("div", { class: "state" },
    h("span", { class: "badge " + job.state }, job.state),
    pr.task && !TERMINAL.has(job.state) ? h("span", { class: "task" }, ` ${pr.task} (${pr.done + 1}/${pr.total})`) : null,
    TERMINAL.has(job.state) ? null : bar);
}

export function renderJobs(main) {
  let jobs = [], models = new Map(), sortKey = "created", sortDir = -1, timer = null, stopped = false, lastSig = "";
  const selected = new Set();
  const filter = h("input", { type: "search", id: "job-filter", placeholder: "Filter by name, model, method…", "aria-label": "Filter jobs", oninput: () => { lastSig = ""; draw(); } });
  const stateSel = h("select", { id: "job-state", "aria-label": "State", onchange: () => { lastSig = ""; draw(); } },
    ["", "queued", "running", "succeeded", "failed", "cancelled"].map((s) => h("option", { value: s }, s || "any state")));
  const cmpBtn = h("button", { type: "button", id: "compare-selected", disabled: true, onclick: () => { location.hash = "#/compare?ids=" + [...selected].join(","); } }, "Compare selected");
  const tbody = h("tbody");
  const headRow = h("tr", {}, COLS.map((c) => h("th", { scope: "col", "data-col": c.key },
    c.sort === false ? h("span", { class: "sr-only" }, "Select") : h("button", { type: "button", class: "sort", onclick: () => { sortDir = sortKey === c.key ? -sortDir : 1; sortKey = c.key; lastSig = ""; draw(); } }, c.label))));
  const count = h("p", { class: "muted", id: "job-count" });
  fill(main, 
    h("div", { class: "toolbar" }, h("h1", {}, "Jobs"), filter, stateSel, cmpBtn, h("a", { class: "button", href: "#/submit" }, "Submit a job")),
    h("div", { class: "table-wrap" }, h("table", { class: "jobs", id: "jobs" }, h("thead", {}, headRow), tbody)),
    count);

  function row(j) {
    const sp = specSummary(j.params && j.params.spec);
    const rep = reportOf(j);
    const m = models.get(j.model_id);
    return {
      job: j, name: j.name, model: m ? m.name + (m.arch ? ` (${m.arch})` : "") : j.model_id, method: sp.method, target: sp.target, bits: sp.bits,
      state: j.state, acc_before: rep ? rep.dense_test_accuracy : null, acc_after: rep ? rep.final_test_accuracy : null,
      rate: rep && rep.totals ? rep.totals.rate : null, storage_rate: rep && rep.totals ? rep.totals.storage_rate : null,
      latency: bestLatency(profilesOf(j)), duration: jobDuration(j), created: j.created_at,
    };
  }

  function draw() {
    const q = filter.value.trim().toLowerCase(), st = stateSel.value;
    let rows = jobs.map(row).filter((r) => (!st || r.state === st) && (!q || [r.name, r.model, r.method, r.target, r.job.id].some((x) => String(x).toLowerCase().includes(q))));
    rows.sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    for (const th of headRow.children) th.setAttribute("aria-sort", th.dataset.col === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
    // Redraw only on a change, and keep the keyboard focus where it was.
    const sig = JSON.stringify(rows.map((r) => [r.job.id, r.state, r.job.progress, r.acc_after, r.latency, r.duration === null ? null : Math.round(r.duration), r.model]));
    if (sig === lastSig) return;
    lastSig = sig;
    const act = document.activeElement;
    const focusRow = act && tbody.contains(act) ? act.closest("tr").dataset.job : null;
    const focusTag = act ? act.tagName : null;
    clear(tbody);
    for (const r of rows) {
      const j = r.job;
      const cb = h("input", { type: "checkbox", "aria-label": "select " + j.name, checked: selected.has(j.id), onchange: (e) => { e.target.checked ? selected.add(j.id) : selected.delete(j.id); cmpBtn.disabled = selected.size < 2; } });
      tbody.append(h("tr", { "data-job": j.id, "data-state": j.state },
        h("td", {}, cb),
        h("td", { "data-col": "name" }, h("a", { href: "#/jobs/" + encodeURIComponent(j.id) }, j.name)),
        h("td", { "data-col": "model" }, r.model),
        h("td", { "data-col": "method" }, r.method),
        h("td", { "data-col": "target", class: "wrap" }, r.target),
        h("td", { "data-col": "bits" }, r.bits),
        h("td", { "data-col": "state" }, stateCell(j)),
        h("td", { "data-col": "acc_before", class: "num" }, pct(r.acc_before)),
        h("td", { "data-col": "acc_after", class: "num" }, pct(r.acc_after)),
        h("td", { "data-col": "rate", class: "num" }, rate(r.rate)),
        h("td", { "data-col": "storage_rate", class: "num" }, rate(r.storage_rate)),
        h("td", { "data-col": "latency", class: "num" }, r.latency === null ? "—" : r.latency.toFixed(3) + " ms"),
        h("td", { "data-col": "duration", class: "num" }, duration(r.duration))));
    }
    if (!rows.length) tbody.append(h("tr", {}, h("td", { colspan: COLS.length, class: "muted" }, jobs.length ? "No job matches the filter." : "No jobs yet: submit one.")));
    if (focusRow) {
      const el = tbody.querySelector(`tr[data-job="${CSS.escape(focusRow)}"] ${focusTag === "INPUT" ? "input" : "a"}`);
      if (el) el.focus({ preventScroll: true });
    }
    count.textContent = `${rows.length} of ${jobs.length} jobs`;
    cmpBtn.disabled = selected.size < 2;
  }

  let failing = false;
  async function poll() {
    try {
      const list = await get("/api/v1/jobs?limit=200");
      jobs = list.items;
      if (jobs.some((j) => !models.has(j.model_id))) {
        const ms = await get("/api/v1/models?limit=200");
        models = new Map(ms.items.map((m) => [m.id, m]));
      }
      draw();
      failing = false;
      // Reports of finished jobs, once each; the table redraws as they come.
      for (const j of jobs) if (j.outputs && j.outputs.report && !reportOf(j)) reportOf(j, true).then((r) => { if (r && !stopped) draw(); });
      // And the device profiles of profiled jobs, once their profile tasks are done.
      for (const j of jobs) if (j.params && j.params.profile && !profilesOf(j)) profilesOf(j, true).then((p) => { if (p && p.length && !stopped) draw(); });
    } catch (e) {
      if (stopped || e.status === 401) return;
      if (!failing) showMessage("Could not load the jobs: " + e.message);
      failing = true;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export { ApiError };
