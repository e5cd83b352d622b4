// Devices: the registered profilers (shown only when this server has
// GET /api/v1/devices, as /ui/features.json says). A device is
// {"id","name","team_id","shared","labels","description","state",
// "draining","queue","tasks_run","created_at","last_seen_at"}
// (docs/api.md, "Devices"); its description is what its profiler found
// on its machine (cpu, arch, isa, cores, threads, memory_bytes, os,
// kernel, cc, opencl).
import { get } from "../api.js";
import { bytes, h, showMessage, fill } from "../util.js";

const POLL_MS = 5000;
// The description's fields in the order shown; any other field follows.
const DESC_ORDER = ["cpu", "arch", "isa", "cores", "threads", "memory_bytes", "os", "kernel", "cc", "opencl"];

function descText(k, v) {
  if (k === "memory_bytes" && typeof v === "number") return bytes(v);
  if (k === "opencl" && Array.isArray(v)) {
    if (!v.length) return "none";
    return v.map((p) => (p && typeof p === "object" ? `${p.platform || "?"}: ${(p.devices || []).join(", ") || "no device"}` : String(p))).join("; ");
  }
  if (Array.isArray(v) && v.every((x) => typeof x !== "object")) return v.join(", ");
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

// The description as a list of fields, each carrying its value as the API
// sent it (data-value) beside the text shown.
function description(d) {
  const desc = d.description && typeof d.description === "object" ? d.description : {};
  const keys = [...DESC_ORDER.filter((k) => k in desc), ...Object.keys(desc).filter((k) => !DESC_ORDER.includes(k)).sort()];
  if (!keys.length) return "—";
  return h("dl", { class: "desc" }, keys.map((k) => h("div", { "data-field": k, "data-value": JSON.stringify(desc[k]) },
    h("dt", {}, k === "memory_bytes" ? "memory" : k), h("dd", {}, descText(k, desc[k])))));
}

function labels(d) {
  const l = d.labels && typeof d.labels === "object" ? Object.entries(d.labels) : [];
  if (!l.length) return "—";
  return h("ul", { class: "labels" }, l.map(([k, v]) => h("li", { "data-label": k }, h("code", {}, `${k}=${v}`))));
}

function seen(at) {
  if (!at) return "never";
  const s = (Date.now() - Date.parse(at)) / 1000;
  return Number.isFinite(s) ? `${at.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC")} (${Math.max(0, Math.round(s))} s ago)` : at;
}

export function renderDevices(main) {
  let stopped = false, timer = null, failing = false;
  const tbody = h("tbody");
  const count = h("p", { class: "muted", id: "device-count" });
  fill(main, h("div", { class: "toolbar" }, h("h1", {}, "Devices")),
    h("p", { class: "muted" }, "Profilers registered with a device token (dnnpress-worker serve --profile). Jobs with a profile section are timed on the ones their selectors match."),
    h("div", { class: "table-wrap" }, h("table", { id: "devices" },
      h("thead", {}, h("tr", {}, ["Name", "Labels", "Description", "State", "Last seen", "Queue", "Runs", "Owner"].map((x) => h("th", { scope: "col" }, x)))), tbody)),
    count);
  async function poll() {
    try {
      const r = await get("/api/v1/devices");
      const items = r.items || [];
      fill(tbody, ...items.map((d) => h("tr", { "data-device": d.id, "data-name": d.name, "data-state": d.state },
        h("th", { scope: "row", "data-key": "name" }, d.name),
        h("td", { "data-key": "labels" }, labels(d)),
        h("td", { class: "wrap", "data-key": "description" }, description(d)),
        h("td", { "data-key": "state" }, h("span", { class: "badge dev-" + d.state }, d.state), d.draining && d.state !== "draining" ? " (draining)" : null),
        h("td", { "data-key": "last_seen" }, seen(d.last_seen_at)),
        h("td", { class: "num", "data-key": "queue" }, String(d.queue ?? "—")),
        h("td", { class: "num", "data-key": "tasks_run" }, String(d.tasks_run ?? "—")),
        h("td", { "data-key": "owner" }, d.shared ? "shared" : "team"))));
      if (!items.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No device has registered.")));
      count.textContent = `${items.length} device${items.length === 1 ? "" : "s"}`;
      failing = false;
    } catch (e) {
      if (e.status !== 401 && !failing) showMessage("Could not load the devices: " + e.message);
      failing = true;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
