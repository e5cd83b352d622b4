// DOM and formatting helpers. Every text from the server goes in through
// textContent (h() children), never innerHTML: job names and error
// messages are data, not markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the CSP
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// Replaces el's children with kids (arrays flattened, null skipped).
export function fill(el, ...kids) {
  clear(el);
  append(el, kids);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// ---- messages: every failed request ends up here or at its field ----

export function showMessage(text, kind = "error", sticky = false) {
  const box = document.getElementById("messages");
  const m = h("div", { class: "msg " + kind },
    h("span", {}, text),
    h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => m.remove() }, "×"));
  box.append(m);
  while (box.children.length > 4) box.firstChild.remove();
  if (!sticky) setTimeout(() => m.remove(), 8000);
  return m;
}

export function clearMessages() {
  clear(document.getElementById("messages"));
}

// ---- formatting ----

export const num = (x, d = 0) =>
  x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
export const int = (x) => (x === null || x === undefined ? "—" : Math.round(x).toLocaleString("en-US"));
export const pct = (x, d = 2) => (x === null || x === undefined ? "—" : (100 * x).toFixed(d) + "%");
export const rate = (x) => (x === null || x === undefined ? "—" : Number(x).toFixed(2) + "×");

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + u[i];
}

export function duration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

export function jobDuration(j) {
  if (!j.started_at) return null;
  const end = j.finished_at ? Date.parse(j.finished_at) : Date.now();
  return (end - Date.parse(j.started_at)) / 1000;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

// What a job compresses with, from its submitted spec (job.params.spec).
export function specSummary(spec) {
  spec = spec || {};
  const layers = spec.layers || [];
  const method = spec.method || "admm";
  let target;
  if (spec.auto && spec.auto.rate) target = `auto ${spec.auto.rate}× ${spec.auto.objective || "params"}`;
  else target = layers.map((r) => `${r.match || "*"}: ${r.prune ? r.prune.scheme + (r.prune.rate ? " " + r.prune.rate + "×" : "") : ""}${r.quant ? (r.prune ? " + " : "") + r.quant.scheme : ""}`).join(", ");
  const bits = [...new Set(layers.filter((r) => r.quant).map((r) => {
    const q = r.quant;
    return q.scheme === "binary" ? 1 : q.scheme === "ternary" ? 2 : q.bits || 8;
  }))];
  return { method, target, bits: bits.length ? bits.join("/") : "32" };
}

// Flattens a JSON value into path -> scalar text ("admm.iters" -> "3").
export function flatten(v, prefix = "", out = {}) {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? prefix + "." + k : k, out);
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => flatten(x, `${prefix}[${i}]`, out));
    if (!v.length) out[prefix] = "[]";
  } else out[prefix] = JSON.stringify(v);
  return out;
}
