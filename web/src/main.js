// The dashboard's entry: hash routes (#/jobs, #/jobs/ID, #/compare?ids=,
// #/submit, #/devices), sign-in, and what happens when the token stops
// working (any 401: back to sign-in, saying why).
import "./style.css";
import { clearToken, getToken, setUnauthorizedHandler } from "./api.js";
import { clearMessages, showMessage } from "./util.js";
import { renderCompare } from "./views/compare.js";
import { renderDevices } from "./views/devices.js";
import { renderJob } from "./views/job.js";
import { renderJobs } from "./views/jobs.js";
import { renderSignin } from "./views/signin.js";
import { renderSubmit } from "./views/submit.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let cleanup = null, features = { devices: false }, refusal = "";

async function loadFeatures() {
  try {
    const r = await fetch("/ui/features.json", { cache: "no-store" });
    if (r.ok) features = await r.json();
  } catch {
    /* the dashboard works without the optional pages */
  }
  document.getElementById("nav-devices").hidden = !features.devices;
}

function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!getToken()) {
    nav.hidden = true;
    renderSignin(main, refusal, () => { refusal = ""; clearMessages(); route(); });
    return;
  }
  nav.hidden = false;
  const [path, qs] = (location.hash.slice(1) || "/jobs").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(qs || "");
  for (const a of nav.querySelectorAll("a")) a.toggleAttribute("aria-current", a.dataset.nav === parts[0]);
  if (parts[0] === "jobs" && parts[1]) cleanup = renderJob(main, parts[1]);
  else if (parts[0] === "compare") cleanup = renderCompare(main, query);
  else if (parts[0] === "submit") cleanup = renderSubmit(main);
  else if (parts[0] === "devices" && features.devices) cleanup = renderDevices(main);
  else cleanup = renderJobs(main);
  main.focus({ preventScroll: true });
}

setUnauthorizedHandler((e) => {
  if (!getToken()) return;
  clearToken();
  refusal = `Your token was refused (${e.message}): sign in again.`;
  showMessage(refusal, "error");
  route();
});

document.getElementById("signout").addEventListener("click", () => {
  clearToken();
  refusal = "";
  route();
});
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => showMessage("Unexpected error: " + (e.reason && e.reason.message ? e.reason.message : String(e.reason))));
loadFeatures().then(route);
