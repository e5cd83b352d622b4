// Submit a job: model (pick, built-in, or upload ONNX), dataset (pick,
// built-in, or upload a tar), method, target (global with automatic rates,
// or rules per layer), quantization, progressive stages, schedule. The
// form is not validated here: the API's messages are, shown at the field
// they name.
import { api, get, upload } from "../api.js";
import { reportOf } from "../reports.js";
import { h, showMessage, fill } from "../util.js";

const ARCHS = ["lenet5", "lenet-300-100", "vgg16-cifar", "resnet20-cifar", "resnet56-cifar", "mobilenetv2-cifar", "lstm-fmnist", "gru-fmnist"];
const SCHEMES = ["irregular", "filter", "channel", "column", "filter+column", "connectivity", "nm", "pattern"];
const QUANTS = ["", "binary", "ternary", "kbit", "pow2", "pow2sum"];

function field(label, input, hint) {
  const err = h("p", { class: "field-error", id: input.id + "-error", role: "alert" });
  input.setAttribute("aria-describedby", err.id);
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, hint ? h("p", { class: "hint" }, hint) : null, err);
}

const num = (id, value, attrs = {}) => h("input", { id, name: id, type: "number", step: "any", value: String(value), ...attrs });
const select = (id, options, value) => h("select", { id, name: id }, options.map(([v, l]) => h("option", { value: v, selected: v === value }, l)));

export function renderSubmit(main) {
  const form = h("form", { id: "submit-form", novalidate: true, class: "card" });
  const formError = h("p", { class: "field-error", id: "form-error", role: "alert" });
  const f = {
    name: h("input", { id: "f-name", name: "name", type: "text", value: "lenet5-admm", autocomplete: "off" }),
    model: select("f-model", [["builtin:lenet5", "built-in: lenet5"]], "builtin:lenet5"),
    modelFile: h("input", { id: "f-model-file", type: "file", accept: ".onnx" }),
    dataset: select("f-dataset", [["builtin:fashion-mnist", "built-in: fashion-mnist"]], "builtin:fashion-mnist"),
    datasetFile: h("input", { id: "f-dataset-file", type: "file", accept: ".tar,.tar.gz,.tgz" }),
    datasetFormat: select("f-dataset-format", [["idx", "IDX"], ["cifar10", "CIFAR-10 binary"], ["npy", "NPY"]], "idx"),
    pretrain: num("f-pretrain-epochs", 1),
    method: select("f-method", [["admm", "ADMM"], ["magnitude", "magnitude pruning (baseline)"]], "admm"),
    targetGlobal: h("input", { type: "radio", name: "target", id: "f-target-global", value: "global" }),
    targetLayers: h("input", { type: "radio", name: "target", id: "f-target-layers", value: "layers", checked: true }),
    autoRate: num("f-auto-rate", 10),
    autoObjective: select("f-auto-objective", [["params", "weights"], ["flops", "FLOPs"]], "params"),
    scheme: select("f-scheme", SCHEMES.map((s) => [s, s]), "irregular"),
    quant: select("f-quant", QUANTS.map((q) => [q, q || "none"]), ""),
    bits: num("f-bits", 8),
    stages: num("f-stages", 1),
    iters: num("f-admm-iters", 2),
    epi: num("f-epochs-per-iter", 1),
    rho: num("f-rho", 0.001),
    retrain: num("f-retrain-epochs", 1),
    compile: select("f-compile", [["", "no"], ["native", "native"], ["portable", "portable"]], ""),
  };
  const rulesBody = h("tbody", { id: "rules" });
  const rules = [];
  function addRule(match = "*", scheme = "irregular", rate = 4) {
    const i = rules.length;
    const r = {
      match: h("input", { type: "text", id: `f-rule-${i}-match`, value: match, "aria-label": `rule ${i + 1} layer glob` }),
      scheme: select(`f-rule-${i}-scheme`, SCHEMES.map((s) => [s, s]), scheme),
      rate: num(`f-rule-${i}-rate`, rate, { "aria-label": `rule ${i + 1} rate` }),
    };
    r.scheme.setAttribute("aria-label", `rule ${i + 1} scheme`);
    r.row = h("tr", {}, h("td", {}, r.match), h("td", {}, r.scheme), h("td", {}, r.rate, h("p", { class: "field-error", id: `f-rule-${i}-rate-error`, role: "alert" })),
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => { r.row.remove(); r.removed = true; } }, "remove")));
    rules.push(r);
    rulesBody.append(r.row);
  }
  addRule("conv*", "irregular", 4);
  addRule("fc*", "irregular", 10);

  const layersHint = h("p", { class: "hint", id: "layers-hint" });
  async function fillLayers() {
    // The model's layers, from the newest report of a job on this model.
    const model = f.model.value;
    try {
      const jobs = (await get("/api/v1/jobs?limit=200")).items.filter((j) => j.model_id === model && j.outputs && j.outputs.report);
      if (!jobs.length) return showMessage("No finished job on this model yet: its layers are known after the first one. Write globs instead.", "info");
      const rep = await reportOf(jobs[0], true);
      if (!rep) return;
      for (const r of rules) if (!r.removed) { r.row.remove(); r.removed = true; }
      for (const l of rep.layers) addRule(l.name, l.prune || "irregular", Math.round(l.rate * 100) / 100);
      layersHint.textContent = `${rep.layers.length} layers from job ${jobs[0].name}.`;
    } catch (e) {
      if (e.status !== 401) showMessage("Could not load the model's layers: " + e.message);
    }
  }

  const globalBox = h("div", { class: "sub", id: "target-global-box" }, field("Global rate (dense / kept)", f.autoRate), field("Counted in", f.autoObjective), field("Pruning scheme", f.scheme));
  const layersBox = h("div", { class: "sub", id: "target-layers-box" },
    h("table", { class: "rules" }, h("thead", {}, h("tr", {}, h("th", {}, "layers (glob)"), h("th", {}, "scheme"), h("th", {}, "rate"), h("th", {}, h("span", { class: "sr-only" }, "remove")))), rulesBody),
    h("div", { class: "row" }, h("button", { type: "button", onclick: () => addRule() }, "Add rule"), h("button", { type: "button", id: "fill-layers", onclick: fillLayers }, "One rule per layer of the model")), layersHint);
  const syncTarget = () => { globalBox.hidden = !f.targetGlobal.checked; layersBox.hidden = !f.targetLayers.checked; };
  f.targetGlobal.addEventListener("change", syncTarget);
  f.targetLayers.addEventListener("change", syncTarget);
  syncTarget();
  const syncUploads = () => {
    f.modelFile.parentElement.hidden = f.model.value !== "upload";
    f.datasetFile.parentElement.hidden = f.datasetFormat.parentElement.hidden = f.dataset.value !== "upload";
  };
  f.model.addEventListener("change", syncUploads);
  f.dataset.addEventListener("change", syncUploads);

  const submitBtn = h("button", { type: "submit", id: "f-submit", class: "primary" }, "Submit job");
  form.append(
    h("h1", {}, "Submit a job"), formError,
    h("fieldset", {}, h("legend", {}, "What"), field("Name", f.name), field("Model", f.model), field("ONNX file", f.modelFile),
      field("Dataset", f.dataset), field("Dataset archive (tar)", f.datasetFile), field("Archive format", f.datasetFormat),
      field("Pretraining epochs (built-in models start untrained)", f.pretrain)),
    h("fieldset", {}, h("legend", {}, "How"), field("Method", f.method),
      h("div", { class: "field", role: "radiogroup", "aria-label": "Target" }, h("span", { class: "label" }, "Target"),
        h("label", {}, f.targetLayers, " per layer"), h("label", {}, f.targetGlobal, " global, automatic per-layer rates")),
      layersBox, globalBox, field("Quantization", f.quant), field("Bits (kbit, pow2, pow2sum)", f.bits), field("Progressive stages", f.stages)),
    h("fieldset", {}, h("legend", {}, "Schedule"), field("ADMM iterations", f.iters), field("Epochs per iteration", f.epi), field("rho", f.rho),
      field("Retraining epochs", f.retrain), field("Compile to C", f.compile)),
    h("div", { class: "row" }, submitBtn));
  fill(main, form);
  syncUploads();

  (async () => {
    try {
      const [ms, ds] = await Promise.all([get("/api/v1/models?limit=200"), get("/api/v1/datasets?limit=200")]);
      fill(f.model, ...ms.items.map((m) => h("option", { value: m.id }, `${m.name} (${m.arch || m.format})`)),
        ...ARCHS.map((a) => h("option", { value: "builtin:" + a }, "new built-in: " + a)), h("option", { value: "upload" }, "upload an ONNX model…"));
      fill(f.dataset, ...ds.items.map((d) => h("option", { value: d.id }, `${d.name} (${d.builtin || d.format})`)),
        h("option", { value: "builtin:fashion-mnist" }, "new built-in: fashion-mnist"), h("option", { value: "upload" }, "upload a dataset archive…"));
      syncUploads();
    } catch (e) {
      if (e.status !== 401) showMessage("Could not load the models and datasets: " + e.message);
    }
  })();

  function clearErrors() {
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  // The input an API message names ("body.spec.layers[1].prune.rate: ...").
  function fieldOf(message) {
    const path = message.split(":")[0].replace(/^body\./, "");
    const live = rules.filter((r) => !r.removed);
    const rule = /^spec\.layers\[(\d+)\]\.(\w+)(?:\.(\w+))?/.exec(path);
    if (rule) {
      const r = live[Number(rule[1])];
      if (rule[2] === "quant") return rule[3] === "bits" ? f.bits : f.quant;
      if (f.targetGlobal.checked) return rule[3] === "rate" ? f.autoRate : f.scheme;
      if (r) return rule[3] === "rate" ? r.rate : rule[3] === "scheme" ? r.scheme : r.match;
    }
    const table = [
      [/^name\b/, f.name], [/^model_id|^model\b|^\?name|^format/, f.model], [/^dataset_id/, f.dataset], [/^pretrain/, f.pretrain],
      [/^spec\.method/, f.method], [/^spec\.auto\.objective/, f.autoObjective], [/^spec\.auto/, f.autoRate],
      [/^spec\.progressive/, f.stages], [/^spec\.admm\.iters/, f.iters], [/^spec\.admm\.epochs_per_iter/, f.epi],
      [/^spec\.admm\.rho/, f.rho], [/^spec\.retrain/, f.retrain], [/^compile/, f.compile]];
    for (const [re, el] of table) if (re.test(path)) return el;
    return null;
  }

  function showFieldError(e, fallbackEl) {
    const el = fieldOf(e.message) || fallbackEl;
    const box = el && document.getElementById(el.id + "-error");
    if (box) {
      box.textContent = e.message;
      el.setAttribute("aria-invalid", "true");
      el.focus();
    } else {
      formError.textContent = e.message;
    }
  }

  function spec() {
    const s = { method: f.method.value, admm: { iters: Number(f.iters.value), epochs_per_iter: Number(f.epi.value), rho: Number(f.rho.value) }, retrain: { epochs: Number(f.retrain.value) } };
    const quant = f.quant.value ? { scheme: f.quant.value, ...(["kbit", "pow2", "pow2sum"].includes(f.quant.value) ? { bits: Number(f.bits.value) } : {}) } : null;
    if (Number(f.stages.value) !== 1) s.progressive = { stages: Number(f.stages.value) };
    if (f.targetGlobal.checked) {
      s.auto = { rate: Number(f.autoRate.value), objective: f.autoObjective.value };
      s.layers = [{ match: "*", prune: { scheme: f.scheme.value }, ...(quant ? { quant } : {}) }];
    } else {
      s.layers = rules.filter((r) => !r.removed).map((r) => ({ match: r.match.value, prune: { scheme: r.scheme.value, rate: Number(r.rate.value) }, ...(quant ? { quant } : {}) }));
    }
    return s;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    submitBtn.disabled = true;
    try {
      let model = f.model.value, dataset = f.dataset.value, builtinModel = false;
      try {
        if (model === "upload") {
          const file = f.modelFile.files[0];
          if (!file) throw Object.assign(new Error("choose an ONNX file to upload"), { local: true });
          model = (await upload(`/api/v1/models?name=${encodeURIComponent(file.name.replace(/\.onnx$/, ""))}&format=onnx`, file)).id;
        } else if (model.startsWith("builtin:")) {
          builtinModel = true;
          model = (await api("POST", "/api/v1/models", { name: model.slice(8), arch: model.slice(8) })).id;
        }
      } catch (e) {
        return showFieldError(e, f.model.value === "upload" ? f.modelFile : f.model);
      }
      try {
        if (dataset === "upload") {
          const file = f.datasetFile.files[0];
          if (!file) throw Object.assign(new Error("choose a dataset archive to upload"), { local: true });
          dataset = (await upload(`/api/v1/datasets?name=${encodeURIComponent(file.name.replace(/\.(tar|tgz|tar\.gz)$/, ""))}&format=${f.datasetFormat.value}`, file)).id;
        } else if (dataset.startsWith("builtin:")) {
          dataset = (await api("POST", "/api/v1/datasets", { name: dataset.slice(8), builtin: dataset.slice(8) })).id;
        }
      } catch (e) {
        return showFieldError(e, f.dataset.value === "upload" ? f.datasetFile : f.dataset);
      }
      const m = await get(`/api/v1/models/${encodeURIComponent(model)}`).catch(() => null);
      const body = { name: f.name.value, model_id: model, dataset_id: dataset, spec: spec() };
      if (builtinModel || (m && m.format === "builtin") || Number(f.pretrain.value) > 0) body.pretrain = { epochs: Number(f.pretrain.value) };
      if (f.compile.value) body.compile = { target: f.compile.value };
      const job = await api("POST", "/api/v1/jobs", body);
      showMessage(`Job ${job.name} submitted.`, "info");
      location.hash = "#/jobs/" + encodeURIComponent(job.id);
    } catch (e) {
      if (e.status !== 401) showFieldError(e, null);
    } finally {
      submitBtn.disabled = false;
    }
  });
  return () => {};
}
