// Compare: two or more jobs side by side (summary, spec diff, per-layer
// rates, test accuracy curves overlaid) and, for the whole team, accuracy
// against compression rate with the Pareto front.
import { get } from "../api.js";
import { lineChart, scatter } from "../charts.js";
import { curves, followJob } from "../events.js";
import { reportOf } from "../reports.js";
import { flatten, h, pct, rate, showMessage, specSummary, fill } from "../util.js";

export function renderCompare(main, query) {
  const ids = (query.get("ids") || "").split(",").filter(Boolean);
  const followers = [], charts = [];
  let stopped = false;
  const body = h("div");
  fill(main, h("div", { class: "toolbar" }, h("h1", {}, "Compare")), body);

  (async () => {
    let jobs;
    try {
      jobs = (await get("/api/v1/jobs?limit=200")).items;
    } catch (e) {
      if (e.status !== 401) showMessage("Could not load the jobs: " + e.message);
      return;
    }
    if (stopped) return;
    // The picker: which jobs to put side by side.
    const picks = h("fieldset", { class: "picker" }, h("legend", {}, "Jobs to compare"),
      jobs.map((j) => h("label", {}, h("input", { type: "checkbox", value: j.id, checked: ids.includes(j.id) }), ` ${j.name} `, h("span", { class: "muted" }, `${j.state} · ${j.id}`))));
    const go = h("button", { type: "button", id: "compare-go", onclick: () => {
      const sel = [...picks.querySelectorAll("input:checked")].map((x) => x.value);
      if (sel.length < 2) return showMessage("Pick at least two jobs.", "info");
      location.hash = "#/compare?ids=" + sel.join(",");
    } }, "Compare");
    const chosen = ids.map((id) => jobs.find((j) => j.id === id)).filter(Boolean);
    if (ids.length && chosen.length !== ids.length) showMessage("Some of the jobs asked for are not in this team's latest 200.");

    if (chosen.length >= 2) body.append(await sideBySide(chosen));
    body.append(h("details", { open: chosen.length < 2 }, h("summary", {}, "Choose jobs"), picks, go));

    // The team's scatter: every job with a report.
    const withReport = jobs.filter((j) => j.outputs && j.outputs.report);
    const reps = await Promise.all(withReport.map((j) => reportOf(j, true)));
    if (stopped) return;
    const pts = withReport.map((j, i) => reps[i] && reps[i].totals ? { x: reps[i].totals.rate, y: reps[i].final_test_accuracy, label: j.name, href: "#/jobs/" + j.id } : null).filter(Boolean);
    const sec = h("section", { class: "card", id: "pareto-sec" }, h("h2", {}, "Accuracy against compression rate"),
      h("p", { class: "muted" }, "Every finished job of the team; the line joins the Pareto front (no other job is both smaller and more accurate)."));
    body.append(sec);
    scatter(sec, { title: "Test accuracy vs compression rate (log scale)", xLabel: "compression rate (weights)", yLabel: "test accuracy", points: pts });
  })();

  async function sideBySide(chosen) {
    const reps = await Promise.all(chosen.map((j) => reportOf(j, true)));
    const wrap = h("div", { id: "compare" });
    // Summary row.
    wrap.append(h("div", { class: "table-wrap" }, h("table", { class: "cmp", id: "cmp-summary" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), chosen.map((j) => h("th", { scope: "col", "data-job": j.id }, h("a", { href: "#/jobs/" + j.id }, j.name))))),
      h("tbody", {},
        h("tr", {}, h("th", { scope: "row" }, "state"), chosen.map((j) => h("td", {}, j.state))),
        h("tr", {}, h("th", { scope: "row" }, "method"), chosen.map((j) => h("td", {}, specSummary(j.params && j.params.spec).method))),
        h("tr", {}, h("th", { scope: "row" }, "accuracy after"), reps.map((r) => h("td", { class: "num" }, r ? pct(r.final_test_accuracy) : "—"))),
        h("tr", {}, h("th", { scope: "row" }, "rate"), reps.map((r) => h("td", { class: "num" }, r ? rate(r.totals.rate) : "—"))),
        h("tr", {}, h("th", { scope: "row" }, "storage rate"), reps.map((r) => h("td", { class: "num" }, r ? rate(r.totals.storage_rate) : "—")))))));
    // Spec diff: every leaf of params, differing ones marked.
    const flats = chosen.map((j) => flatten(j.params || {}));
    const keys = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort();
    const diffRows = keys.map((k) => {
      const vals = flats.map((f) => f[k] ?? "—");
      const differs = vals.some((v) => v !== vals[0]);
      return h("tr", { class: differs ? "differs" : "", "data-key": k }, h("th", { scope: "row" }, k), vals.map((v) => h("td", {}, v)));
    });
    const onlyDiff = h("input", { type: "checkbox", id: "only-diff", checked: true, onchange: () => { for (const r of diffRows) r.hidden = onlyDiff.checked && !r.classList.contains("differs"); } });
    for (const r of diffRows) r.hidden = !r.classList.contains("differs");
    wrap.append(h("section", { class: "card", id: "spec-diff" }, h("h2", {}, "Spec"), h("label", {}, onlyDiff, " only the differences"),
      h("div", { class: "table-wrap" }, h("table", { class: "cmp" }, h("thead", {}, h("tr", {}, h("th", {}, "field"), chosen.map((j) => h("th", { scope: "col" }, j.name)))), h("tbody", {}, diffRows)))));
    // Per-layer rates.
    const names = [...new Set(reps.flatMap((r) => (r ? r.layers.map((l) => l.name) : [])))];
    wrap.append(h("section", { class: "card", id: "layer-rates" }, h("h2", {}, "Per-layer rates"),
      h("div", { class: "table-wrap" }, h("table", { class: "cmp" },
        h("thead", {}, h("tr", {}, h("th", {}, "layer"), chosen.map((j) => h("th", { scope: "col" }, j.name)))),
        h("tbody", {}, names.map((n) => h("tr", { "data-layer": n }, h("th", { scope: "row" }, n), reps.map((r) => {
          const l = r && r.layers.find((x) => x.name === n);
          return h("td", { class: "num" }, l ? rate(l.rate) : "—");
        }))))))));
    // Curves overlaid, live.
    const sec = h("section", { class: "card", id: "cmp-curves" }, h("h2", {}, "Curves"));
    wrap.append(sec);
    const cAcc = lineChart(sec, { title: "Test accuracy", xLabel: "epoch", series: chosen.map((j) => j.name), id: "cmp-accuracy" });
    const cLoss = lineChart(sec, { title: "Training loss", xLabel: "epoch", series: chosen.map((j) => j.name), id: "cmp-loss" });
    charts.push(cAcc, cLoss);
    const per = chosen.map(() => ({ acc: [], loss: [] }));
    const redraw = () => {
      const n = Math.max(0, ...per.map((p) => p.acc.length));
      const xs = Array.from({ length: n }, (_, i) => i + 1);
      cAcc.update([xs, ...per.map((p) => xs.map((_, i) => p.acc[i] ?? null))]);
      cLoss.update([xs, ...per.map((p) => xs.map((_, i) => p.loss[i] ?? null))]);
    };
    chosen.forEach((j, k) => followers.push(followJob(j.id, (hist) => {
      const c = curves(hist.events);
      per[k] = { acc: c.accuracy[2], loss: c.loss[1] };
      redraw();
    }, (e) => { if (e.status !== 401) showMessage(`Event stream of ${j.name}: ${e.message}`); })));
    return wrap;
  }

  return () => {
    stopped = true;
    for (const f of followers) f.stop();
    for (const c of charts) c.destroy();
  };
}
