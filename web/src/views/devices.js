// Devices: the registered profilers (shown only when this server has
// GET /api/v1/devices, as /ui/features.json says).
import { get } from "../api.js";
import { h, showMessage, fill } from "../util.js";

const pick = (o, ...keys) => { for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k]; return null; };

function describe(d) {
  const desc = pick(d, "description", "device");
  if (!desc) return "—";
  if (typeof desc !== "object") return String(desc);
  return Object.entries(desc).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

export function renderDevices(main) {
  let stopped = false, timer = null;
  const tbody = h("tbody");
  fill(main, h("div", { class: "toolbar" }, h("h1", {}, "Devices")),
    h("div", { class: "table-wrap" }, h("table", { id: "devices" },
      h("thead", {}, h("tr", {}, ["Name", "Description", "State", "Last seen", "Queue"].map((x) => h("th", { scope: "col" }, x)))), tbody)));
  async function poll() {
    try {
      const r = await get("/api/v1/devices?limit=200");
      const items = r.items || [];
      fill(tbody, ...items.map((d) => h("tr", { "data-device": d.id },
        h("td", {}, String(pick(d, "name", "id"))), h("td", { class: "wrap" }, describe(d)), h("td", {}, String(pick(d, "state", "status") ?? "—")),
        h("td", {}, String(pick(d, "last_seen_at", "last_seen") ?? "—")), h("td", { class: "num" }, String(pick(d, "queue", "queued", "n_queued") ?? "—")))));
      if (!items.length) tbody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No device has registered.")));
    } catch (e) {
      if (e.status !== 401) showMessage("Could not load the devices: " + e.message);
    }
    if (!stopped) timer = setTimeout(poll, 5000);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
