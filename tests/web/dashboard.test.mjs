// The dashboard end to end in headless Chromium (playwright-core), against
// the real dnnpress-server with one real local worker running real short
// LeNet-5 jobs on a slice of Fashion-MNIST:
//
//   1. static files: types, CSP, ETag/304, immutable assets, no traversal
//   2. a wrong token is refused with the server's message; a team token signs in
//   3. a job submitted meanwhile appears in the jobs table and its progress
//      moves, without a reload
//   4. its page draws curves with points; a reload mid-run redraws them at
//      once and resumes the stream with Last-Event-ID, and they continue
//   5. when it finishes, the per-layer table equals the API's report
//   6. the submit form: a bad rate is refused with the API's own message at
//      that field; fixed, the job is submitted, then cancelled from its page
//   7. compare two finished jobs: spec diff, per-layer rates, overlaid
//      curves, the accuracy/rate scatter with its Pareto front
//   8. devices: a real profiler (dnnpress-worker serve --profile with a
//      device token) registers; the Devices page lists it with the name,
//      labels, state and description of GET /api/v1/devices; job C is
//      compiled and profiled on it, and its page shows the device's p50
//      latencies and per-layer times equal to its profile artifact, the
//      jobs table its best latency
//   9. phone width: no horizontal overflow of the page itself
// and, throughout, no console error or warning but the two answers the
// test provokes on purpose (the wrong token's 401, the bad field's 422).
// Screenshots of every page go to OUT (build/web-test by default).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(ROOT, "web", "package.json"));
const { chromium } = require("playwright-core");

const BUILD = resolve(process.argv[2] || "build/release");
const OUT = resolve(process.argv[3] || join(ROOT, "build", "web-test"));
const ADMIN = "web-test-admin-token-0123456789abcdef";
const t0 = Date.now();
const tmp = mkdtempSync(join(tmpdir(), "dp-web-"));
let server = null, browser = null, profiler = null;

function log(msg) {
  console.log(`web: ${((Date.now() - t0) / 1000).toFixed(1)}s ${msg}`);
}
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (server) try { process.kill(-server.pid, "SIGKILL"); } catch { /* gone */ }
  if (profiler) try { process.kill(-profiler.pid, "SIGKILL"); } catch { /* gone */ }
  if (!process.env.DP_WEB_KEEP) rmSync(tmp, { recursive: true, force: true });
}
async function fail(msg) {
  console.log("web: FAIL: " + msg);
  try {
    console.log("---- server log (tail) ----\n" + readFileSync(join(tmp, "server.log"), "utf8").split("\n").slice(-30).join("\n"));
  } catch { /* no log */ }
  try {
    console.log("---- profiler log (tail) ----\n" + readFileSync(join(tmp, "profiler.log"), "utf8").split("\n").slice(-20).join("\n"));
  } catch { /* no log */ }
  await cleanup();
  process.exit(1);
}
function check(cond, msg) {
  if (!cond) throw new Error(msg);
}
async function until(what, fn, timeoutMs = 60000, stepMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

// The server's local workers (its child processes): the test pauses them
// (SIGSTOP) to hold a job mid-run while the page reloads, whatever the
// machine's speed, and resumes them (SIGCONT).
function workers() {
  const out = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, "utf8").split(") ").pop().split(" ");
      if (Number(f[1]) === server.pid) out.push(Number(d));
    } catch { /* exited */ }
  }
  return out;
}
function signalWorkers(sig) {
  const w = workers();
  check(w.length > 0, "no local worker to " + sig);
  for (const pid of w) process.kill(pid, sig);
}

function freePort() {
  return new Promise((res) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

let URL0 = "";
async function req(method, path, body, token) {
  const h = {};
  if (token) h.Authorization = "Bearer " + token;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const r = await fetch(URL0 + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}
async function ok(method, path, body, token, want) {
  const r = await req(method, path, body, token);
  check(r.status === want, `${method} ${path}: ${r.status} ${r.text.slice(0, 300)} (wanted ${want})`);
  return r.json;
}

// Job specs: A is long enough to be watched and reloaded mid-run (10
// epochs), C short; both finish, B is cancelled.
// Long enough that a quiet machine is still running it when the page reloads mid-run.
const specA = { admm: { iters: 16, epochs_per_iter: 1, rho: 1e-3 }, retrain: { epochs: 2 },
  layers: [{ match: "conv*", prune: { scheme: "irregular", rate: 4 } }, { match: "fc*", prune: { scheme: "irregular", rate: 10 } }] };
const specC = { admm: { iters: 2, epochs_per_iter: 1, rho: 1e-3 }, retrain: { epochs: 1 },
  // conv1 has one input channel (a 3x3 kernel per filter): patterns need more, so it is pruned irregularly.
  layers: [{ match: "*conv1*", prune: { scheme: "irregular", rate: 2 } }, { match: "*conv2*", prune: { scheme: "pattern", library_size: 4 } },
    { match: "*fc*", prune: { scheme: "irregular", rate: 4 } }] };

async function main() {
  mkdirSync(OUT, { recursive: true });
  const port = await freePort();
  URL0 = `http://127.0.0.1:${port}`;
  // Job C's model: a small CNN with 3x3 convolutions (a pattern library to draw),
  // made by PyTorch (a test fixture) while the server starts.
  const cnnPath = join(tmp, "cnn3.onnx");
  const fixture = new Promise((res, rej) => {
    const p = spawn("/usr/bin/python3", ["-W", "ignore", join(ROOT, "tests", "web", "make_pattern_onnx.py"), cnnPath], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => { err += d; });
    p.on("exit", (code) => (code === 0 ? res() : rej(new Error("make_pattern_onnx.py: " + err.slice(-2000)))));
  });
  const logFd = openSync(join(tmp, "server.log"), "a");
  server = spawn(join(BUILD, "dnnpress-server"), ["--listen", `127.0.0.1:${port}`, "--data-dir", join(tmp, "data"),
    "--local-workers", "1", "--lease-s", "30", "--backoff-ms", "50"], {
    env: { ...process.env, DNNPRESS_ADMIN_TOKEN: ADMIN, DNNPRESS_LIMIT_TRAIN: "1024", DNNPRESS_LIMIT_TEST: "256", OMP_NUM_THREADS: "2" },
    stdio: ["ignore", logFd, logFd], detached: true,
  });
  await until("the server", async () => (await req("GET", "/healthz").catch(() => ({ status: 0 }))).status === 200, 15000, 100);

  // ---- 1. static files ----
  const index = await req("GET", "/");
  check(index.status === 200 && /text\/html/.test(index.headers.get("content-type")), "GET / is not the HTML page");
  const csp = index.headers.get("content-security-policy") || "";
  check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp) && /frame-ancestors 'none'/.test(csp), "GET / has no strict CSP: " + csp);
  check(index.headers.get("x-content-type-options") === "nosniff", "GET / lacks nosniff");
  check(index.headers.get("cache-control") === "no-cache", "index.html must be revalidated");
  check(!/<script>|<script [^>]*>[^<]/.test(index.text), "index.html has an inline script");
  const js = /src="(\/ui\/app-[A-Z0-9]+\.js)"/.exec(index.text), css = /href="(\/ui\/app-[A-Z0-9]+\.css)"/.exec(index.text);
  check(js && css, "index.html does not load the hashed bundle");
  const jsr = await req("GET", js[1]);
  check(jsr.status === 200 && /^text\/javascript/.test(jsr.headers.get("content-type")) && /immutable/.test(jsr.headers.get("cache-control")), "bundle: wrong type or caching");
  check((await req("GET", css[1])).headers.get("content-type").startsWith("text/css"), "stylesheet: wrong type");
  const etag = index.headers.get("etag");
  const r304 = await fetch(URL0 + "/", { headers: { "If-None-Match": etag } });
  check(r304.status === 304, "GET / with its ETag is not 304 but " + r304.status);
  for (const bad of ["/ui/..%2F..%2Findex.html", "/ui/%2e%2e%2fweb", "/ui/.hidden.js", "/ui/../index.html", "/ui/a/b.js", "/ui/app.exe", "/ui/index.html", "/index.html", "/ui/..%2f..%2f..%2fconfig.c"]) {
    const r = await req("GET", bad);
    check(r.status === 404, `${bad} answered ${r.status}, not 404`);
  }
  const feat = await ok("GET", "/ui/features.json", undefined, undefined, 200);
  check(typeof feat.devices === "boolean", "features.json has no devices flag");
  log("ok: static files (types, CSP, ETag 304, immutable bundle, traversal refused)");

  // ---- the team, its model and dataset, job A ----
  const team = await ok("POST", "/api/v1/teams", { name: "web" }, ADMIN, 201);
  const TOKEN = (await ok("POST", "/api/v1/tokens", { team_id: team.id, scope: "team", name: "web" }, ADMIN, 201)).token;
  const model = await ok("POST", "/api/v1/models", { name: "lenet5", arch: "lenet5" }, TOKEN, 201);
  const dataset = await ok("POST", "/api/v1/datasets", { name: "fashion-mnist", builtin: "fashion-mnist" }, TOKEN, 201);
  // A profiling device: the real profiler, registered with a team device token.
  const DEV = "web-dev-1", DEV_LABELS = { board: "ci", site: "web-test" };
  const devTok = (await ok("POST", "/api/v1/tokens", { scope: "device", name: DEV }, TOKEN, 201)).token;
  const devLog = openSync(join(tmp, "profiler.log"), "a");
  profiler = spawn(join(BUILD, "dnnpress-worker"), ["serve", "--server", URL0, "--cache-dir", join(tmp, "cache-" + DEV), "--profile",
    "--device-name", DEV, "--device-labels", Object.entries(DEV_LABELS).map(([k, v]) => `${k}=${v}`).join(","), "--wait-s", "1", "--threads", "1"], {
    env: { ...process.env, DNNPRESS_TOKEN: devTok, OMP_NUM_THREADS: "1" }, stdio: ["ignore", devLog, devLog], detached: true,
  });
  const submit = (name, spec, epochs) => ok("POST", "/api/v1/jobs", { name, model_id: model.id, dataset_id: dataset.id, pretrain: { epochs, seed: 1 }, spec }, TOKEN, 201);

  // ---- the browser ----
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await ctx.newPage();
  const consoleProblems = [];
  let allowed = []; // [{re, status}] network errors provoked on purpose
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    const url = (m.location() && m.location().url) || "";
    if (/^Failed to load resource/.test(m.text()) && allowed.some((a) => a.re.test(url) && m.text().includes(String(a.status)))) return;
    consoleProblems.push(`${m.type()}: ${m.text()} (${url})`);
  });
  page.on("pageerror", (e) => consoleProblems.push("pageerror: " + e.message));
  const eventRequests = [];
  page.on("request", (r) => { if (r.url().includes("/events")) eventRequests.push({ url: r.url(), lastId: r.headers()["last-event-id"] || null }); });
  const shot = (name, fullPage = false) => page.screenshot({ path: join(OUT, name + ".png"), fullPage });

  // ---- 2. sign in ----
  await page.goto(URL0 + "/");
  await page.waitForSelector("#token");
  await shot("signin");
  allowed = [{ re: /\/api\/v1\/me$/, status: 401 }];
  await page.fill("#token", "not-a-token-of-this-server");
  await page.keyboard.press("Enter");
  const refused = await (await page.waitForSelector("#token-error:not(:empty)")).textContent();
  const apiRefusal = (await req("GET", "/api/v1/me", undefined, "not-a-token-of-this-server")).json.message;
  check(refused.includes(apiRefusal), `wrong token: shown "${refused}", the API says "${apiRefusal}"`);
  check(!(await page.evaluate(() => sessionStorage.getItem("dnnpress.token"))), "a refused token was kept");
  allowed = [];
  await page.fill("#token", TOKEN);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#jobs");
  check(!page.url().includes(TOKEN), "the token is in the URL");
  check((await page.evaluate(() => localStorage.length)) === 0, "something was put in localStorage");
  log(`ok: a wrong token is refused ("${refused}"), the team token signs in`);

  // ---- 3. a job appears and progresses live ----
  const jobA = await submit("lenet5-watch", specA, 2);
  const rowA = `tr[data-job="${jobA.id}"]`;
  await page.waitForSelector(rowA, { timeout: 10000 });
  const progressOf = () => page.evaluate((sel) => {
    const tr = document.querySelector(sel);
    if (!tr) return null;
    const p = tr.querySelector("progress");
    return { state: tr.dataset.state, text: tr.querySelector('[data-col="state"]').textContent, value: p ? p.value : null };
  }, rowA);
  const first = await until("job A running in the table", async () => { const p = await progressOf(); return p && p.state === "running" && p.value > 0 ? p : null; }, 60000);
  const later = await until("job A's progress to move in the table", async () => { const p = await progressOf(); return p && (p.text !== first.text || p.value !== first.value) ? p : null; }, 60000);
  // Hold job A mid-run from here on (its worker paused, resumed after the
  // reload below): its pretraining is done, so its page has curve points,
  // and however fast the machine, it cannot end before the reload.
  await until("job A past its pretraining", async () => { const p = await progressOf(); return p && p.state === "running" && !/train\b/.test(p.text.replace("retrain", "")) ? p : null; }, 60000, 20);
  signalWorkers("SIGSTOP");
  await shot("jobs");
  log(`ok: job A appeared and progressed without a reload (${first.text} ${first.value.toFixed(2)} -> ${later.text} ${later.value === null ? "" : later.value.toFixed(2)})`);

  // ---- 4. its page: curves, reload mid-run ----
  await page.click(`${rowA} a`);
  await page.waitForSelector("#curves");
  const points = (id) => page.evaluate((i) => Number(document.querySelector(`[data-chart="${i}"]`)?.dataset.points || 0), id);
  await until("accuracy points on job A's page", async () => (await points("accuracy")) >= 2, 60000);
  // Hold the job mid-run: its worker paused, the reload cannot race its end.
  signalWorkers("SIGSTOP");
  let after;
  try {
    await new Promise((r) => setTimeout(r, 300)); // events already sent reach the page
    const jobNow = await ok("GET", `/api/v1/jobs/${jobA.id}`, undefined, TOKEN, 200);
    check(jobNow.state === "running", "job A finished before the reload could be tested; make it longer");
    await until("the page to have every event sent", async () => Number(await page.getAttribute("#stream-state", "data-last-id")) > 0, 5000, 50);
    const before = await points("accuracy");
    const lastIdBefore = Number(await page.getAttribute("#stream-state", "data-last-id"));
    await shot("job-running");
    eventRequests.length = 0;
    await page.reload();
    await page.waitForSelector("#curves");
    const redrawn = await until("curves redrawn after the reload", async () => { const n = await points("accuracy"); return n >= before ? n : 0; }, 5000, 50);
    await until("the stream to reopen", async () => eventRequests.length > 0, 5000, 50);
    check(eventRequests[0].lastId !== null && Number(eventRequests[0].lastId) === lastIdBefore, `after the reload the stream did not resume: Last-Event-ID ${eventRequests[0].lastId}, last id before ${lastIdBefore}`);
    signalWorkers("SIGCONT");
    after = await until("new points after the reload", async () => { const n = await points("accuracy"); return n > before ? n : 0; }, 90000);
    log(`ok: curves with points (${before}); after a reload ${redrawn} at once, the stream resumed after id ${eventRequests[0].lastId}, and continued to ${after}`);
  } finally {
    signalWorkers("SIGCONT");
  }

  // ---- 5. the per-layer table equals the API's report ----
  await fixture;
  const cnnResp = await fetch(`${URL0}/api/v1/models?name=cnn3&format=onnx`, { method: "POST", headers: { Authorization: "Bearer " + TOKEN, "Content-Type": "application/octet-stream" }, body: readFileSync(cnnPath) });
  check(cnnResp.status === 201, "uploading cnn3.onnx: " + cnnResp.status + " " + (await cnnResp.clone().text()));
  const cnn = await cnnResp.json();
  // Job C is also compiled and profiled on the device (registered long since; checked in 9).
  await until("the profiler to register", async () => (await ok("GET", "/api/v1/devices", undefined, TOKEN, 200)).items.some((d) => d.name === DEV), 15000);
  const jobC = await ok("POST", "/api/v1/jobs", { name: "cnn3-pattern", model_id: cnn.id, dataset_id: dataset.id, pretrain: { epochs: 1, seed: 1 }, spec: specC,
    compile: { target: "portable" }, profile: { devices: [{ name: DEV }], runs: 5, warmup: 1, threads: [1] } }, TOKEN, 201); // queued behind A
  await page.waitForSelector("#layers tbody tr[data-layer]", { timeout: 120000 });
  // The compress task writes a first report, retrain the final one: compare with the final one.
  await until("job A to succeed", async () => (await ok("GET", `/api/v1/jobs/${jobA.id}`, undefined, TOKEN, 200)).state === "succeeded", 120000, 300);
  const rep = await ok("GET", `/api/v1/jobs/${jobA.id}/report`, undefined, TOKEN, 200);
  const tableDiff = async () => {
    const rows = await page.$$eval("#layers tbody tr[data-layer]", (trs) => trs.map((tr) => {
      const cell = (k) => tr.querySelector(`[data-key="${k}"]`).textContent;
      return { name: tr.dataset.layer, params: cell("params"), nonzeros: cell("nonzeros"), rate: cell("rate"), shape: cell("shape") };
    }));
    if (rows.length !== rep.layers.length) return `table has ${rows.length} layers, the report ${rep.layers.length}`;
    for (const [i, l] of rep.layers.entries()) {
      const r = rows[i];
      if (r.name !== l.name) return `row ${i}: ${r.name} != ${l.name}`;
      if (Number(r.params.replace(/,/g, "")) !== l.params || Number(r.nonzeros.replace(/,/g, "")) !== l.nonzeros) return `${l.name}: ${r.params}/${r.nonzeros} != ${l.params}/${l.nonzeros}`;
      if (!(Math.abs(parseFloat(r.rate) - l.rate) < 0.006)) return `${l.name}: rate ${r.rate} != ${l.rate}`;
      if (r.shape !== l.shape.join("×")) return `${l.name}: shape ${r.shape}`;
    }
    const summary = await page.textContent("#summary");
    const acc = /Accuracy([\d.]+)% → ([\d.]+)%/.exec(summary);
    if (!acc || Math.abs(acc[1] - 100 * rep.dense_test_accuracy) >= 0.006 || Math.abs(acc[2] - 100 * rep.final_test_accuracy) >= 0.006 || summary.includes("[object"))
      return `job summary "${summary}" against the report's ${rep.dense_test_accuracy} -> ${rep.final_test_accuracy}`;
    return "";
  };
  let diff = "";
  await until("the page to show the final report", async () => (diff = await tableDiff()) === "", 15000).catch(() => { throw new Error(diff); });
  const rows = rep.layers;
  // The stream ends with the job: every epoch event once, none lost or doubled by the reload.
  const epochEvents = (await req("GET", `/api/v1/jobs/${jobA.id}/events`, undefined, TOKEN)).text.split("\n").filter((x) => x === "event: epoch").length;
  let pts = 0;
  await until(`the chart to have the job's ${epochEvents} epoch events`, async () => (pts = await points("accuracy")) === epochEvents, 15000).catch(() => {
    throw new Error(`accuracy chart has ${pts} points, the job ${epochEvents} epoch events`);
  });
  check((await points("residual")) === specA.admm.iters, "residual chart: not one point per ADMM iteration");
  // Every event once, keep-alive comments not counted as events: as many as the last id.
  const st = /(\d+) events \(last id (\d+)\)/.exec(await page.textContent("#stream-state"));
  check(st && st[1] === st[2], "the page holds another number of events than the stream sent: " + (st && st[0]));
  await page.waitForSelector("#storage .bar-row[data-format=csr]");
  await page.waitForSelector("#artifacts [data-kind=onnx]");
  // Download the ONNX model through the page (fetch with the token, then a blob link).
  const onnxSha = (await ok("GET", `/api/v1/jobs/${jobA.id}/artifacts`, undefined, TOKEN, 200)).items.find((x) => x.kind === "onnx").sha256;
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#artifacts [data-kind=onnx]")]);
  const onnxPath = join(tmp, "lenet5-watch.onnx");
  await dl.saveAs(onnxPath);
  const got = createHash("sha256").update(readFileSync(onnxPath)).digest("hex");
  check(got === onnxSha, `the downloaded ONNX has sha256 ${got}, the artifact ${onnxSha}`);
  await page.waitForSelector("#timeline li.succeeded");
  await shot("job", true);
  log(`ok: job A's per-layer table (${rows.map((r) => r.name).join(", ")}) equals the report; ${pts} points = ${epochEvents} epoch events; storage, timeline; the ONNX artifact downloads intact`);

  // ---- 6. submit through the form (a bad field first), then cancel ----
  await page.click('nav a[data-nav="submit"]');
  await page.waitForSelector("#submit-form");
  await page.waitForSelector(`#f-model option[value="${model.id}"]`, { state: "attached" });
  // The model: job A's exported ONNX, uploaded through the form.
  await page.selectOption("#f-model", "upload");
  await page.setInputFiles("#f-model-file", onnxPath);
  await page.selectOption("#f-dataset", dataset.id);
  await page.fill("#f-name", "lenet5-form");
  await page.fill("#f-rule-0-rate", "0.5");
  allowed = [{ re: /\/api\/v1\/jobs$/, status: 422 }];
  await page.click("#f-submit");
  const shown = await (await page.waitForSelector("#f-rule-0-rate-error:not(:empty)")).textContent();
  const apiSays = (await req("POST", "/api/v1/jobs", { name: "x", model_id: model.id, dataset_id: dataset.id, pretrain: { epochs: 1 },
    spec: { layers: [{ match: "conv*", prune: { scheme: "irregular", rate: 0.5 } }] } }, TOKEN)).json.message;
  check(shown === apiSays, `the form shows "${shown}" at the rate, the API says "${apiSays}"`);
  check((await page.getAttribute("#f-rule-0-rate", "aria-invalid")) === "true", "the bad field is not marked invalid");
  await shot("submit-error");
  allowed = [];
  await page.fill("#f-rule-0-rate", "3");
  await page.click("#f-submit");
  await page.waitForURL(/#\/jobs\/job_/);
  const jobB = decodeURIComponent(page.url().split("#/jobs/")[1]);
  const b = await ok("GET", `/api/v1/jobs/${jobB}`, undefined, TOKEN, 200);
  check(b.name === "lenet5-form" && b.params.spec.layers[0].prune.rate === 3, "the form's job is not what was filled in");
  const bModel = await ok("GET", `/api/v1/models/${b.model_id}`, undefined, TOKEN, 200);
  check(bModel.format === "onnx" && bModel.sha256 === onnxSha, "the form's job does not use the uploaded ONNX: " + JSON.stringify(bModel));
  page.once("dialog", (d) => d.accept());
  await page.click("#cancel");
  await until("job B cancelled", async () => (await ok("GET", `/api/v1/jobs/${jobB}`, undefined, TOKEN, 200)).state === "cancelled", 30000);
  await page.waitForSelector('#summary .badge.cancelled', { timeout: 10000 });
  await page.waitForSelector("#retry");
  log(`ok: the form shows the API's message at the field ("${shown}"), submits job B on the ONNX model it uploaded, and cancels it`);

  // ---- 7. compare A and C ----
  let stC = "";
  await until("job C to finish", async () => (stC = (await ok("GET", `/api/v1/jobs/${jobC.id}`, undefined, TOKEN, 200)).state) !== "running" && stC !== "queued", 180000, 500);
  check(stC === "succeeded", "job C (compile and profile) ended " + stC);
  await page.goto(`${URL0}/#/compare?ids=${jobA.id},${jobC.id}`);
  await page.waitForSelector("#spec-diff tr.differs");
  const diffKeys = await page.$$eval("#spec-diff tr.differs", (trs) => trs.map((t) => t.dataset.key));
  check(diffKeys.includes("spec.admm.iters") && diffKeys.includes("pretrain.epochs"), "spec diff misses admm.iters or pretrain.epochs: " + diffKeys.join(", "));
  const repC = await ok("GET", `/api/v1/jobs/${jobC.id}/report`, undefined, TOKEN, 200);
  const rateCells = (layer) => page.$$eval(`#layer-rates tr[data-layer="${layer}"] td`, (tds) => tds.map((t) => t.textContent));
  const fcA = await rateCells("fc1"), fcC = await rateCells("/fc1/Gemm");
  check(Math.abs(parseFloat(fcA[0]) - rep.layers.find((l) => l.name === "fc1").rate) < 0.006 && fcA[1] === "—" &&
    fcC[0] === "—" && Math.abs(parseFloat(fcC[1]) - repC.layers.find((l) => l.name === "/fc1/Gemm").rate) < 0.006, `per-layer rates differ from the reports: ${fcA} / ${fcC}`);
  await until("overlaid curves", async () => (await points("cmp-accuracy")) >= 10, 20000);
  await page.waitForSelector('[data-chart="pareto"] circle');
  const nScatter = await page.$$eval('[data-chart="pareto"] circle', (c) => c.length);
  const front = Number(await page.getAttribute('[data-chart="pareto"] polyline', "data-front"));
  check(nScatter === 2 && front >= 1 && front <= 2, `scatter: ${nScatter} points, front ${front}`);
  await shot("compare");
  // Job C's pattern library: one 3x3 grid per kept pattern, its taps and kernel count as in the report.
  await page.goto(`${URL0}/#/jobs/${jobC.id}`);
  await page.waitForSelector("#patterns .pattern-cell");
  const grids = await page.$$eval("#patterns .pattern-layer", (ls) => ls.map((l) => ({ layer: l.querySelector("h3").textContent,
    cells: [...l.querySelectorAll(".pattern-cell")].map((c) => ({ mask: c.querySelector(".pattern").getAttribute("aria-label").split(" ")[1],
      on: [...c.querySelectorAll(".pattern span")].map((x) => (x.classList.contains("on") ? 1 : 0)), caption: c.querySelector("figcaption").textContent })) })));
  const withPatterns = repC.layers.filter((l) => l.pattern_histogram);
  check(withPatterns.length >= 1 && grids.length === withPatterns.length, `${grids.length} pattern layers drawn, the report has ${withPatterns.length}`);
  let nGrids = 0;
  for (const l of withPatterns) {
    const g = grids.find((x) => x.layer === l.name);
    check(g && g.cells.length === Object.keys(l.pattern_histogram).length, `${l.name}: ${g && g.cells.length} patterns drawn`);
    for (const c of g.cells) {
      const bits = parseInt(c.mask, 16);
      check(c.on.length === 9 && c.on.every((b, i) => b === ((bits >> i) & 1)), `${l.name} pattern ${c.mask}: taps ${c.on.join("")}`);
      check(c.caption === `${l.pattern_histogram[c.mask].toLocaleString("en-US")} kernels`, `${l.name} pattern ${c.mask}: "${c.caption}"`);
      nGrids++;
    }
  }
  await page.locator("#patterns").scrollIntoViewIfNeeded();
  await shot("job-patterns");
  log(`ok: compare: spec diff (${diffKeys.length} fields differ), per-layer rates equal the reports, overlaid curves, scatter with ${nScatter} points and a front of ${front}; job C's ${nGrids} pattern grids match its report`);

  await page.goto(URL0 + "/#/jobs");
  await page.waitForSelector(`tr[data-job="${jobC.id}"] [data-col="acc_after"]:not(:has-text("—"))`);
  await shot("jobs-done");
  const order = () => page.$$eval("#jobs tbody tr[data-job]", (trs) => trs.map((t) => t.dataset.job));
  await page.fill("#job-filter", "pattern");
  await until("the filter", async () => JSON.stringify(await order()) === JSON.stringify([jobC.id]), 5000, 50);
  await page.fill("#job-filter", "");
  const byRate = [[jobA.id, rep.totals.rate], [jobC.id, repC.totals.rate]].sort((x, y) => x[1] - y[1]).map((x) => x[0]);
  await page.click('th[data-col="rate"] button');
  await until("rate ascending", async () => JSON.stringify(await order()) === JSON.stringify([...byRate, jobB]), 5000, 50);
  await page.click('th[data-col="rate"] button');
  await until("rate descending", async () => JSON.stringify(await order()) === JSON.stringify([...byRate.reverse(), jobB]), 5000, 50);
  log("ok: the jobs table filters and sorts (by rate, jobs without a report last)");

  // ---- 8. devices: the Devices page, job C's device latencies ----
  const profSha = (await ok("GET", `/api/v1/jobs/${jobC.id}/artifacts`, undefined, TOKEN, 200)).items.filter((a) => a.kind === "profile").map((a) => a.sha256);
  check(profSha.length === 1, `job C has ${profSha.length} profile artifacts, not 1`);
  const prof = await ok("GET", `/api/v1/artifacts/${profSha[0]}`, undefined, TOKEN, 200);
  const r0 = prof.results[0];
  check(prof.device.name === DEV && r0.compressed.latency_ms.p50 > 0, "job C's profile: " + JSON.stringify(prof).slice(0, 500));
  const fmt = (x, d) => x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  await page.goto(`${URL0}/#/jobs/${jobC.id}`);
  const devRow = `#device-latency tr[data-device="${DEV}"]`;
  await page.waitForSelector(devRow, { timeout: 15000 });
  const devCells = await page.$$eval(`${devRow} [data-key]`, (c) => Object.fromEntries(c.map((x) => [x.dataset.key, x.textContent])));
  const wantCells = { device: DEV, threads: String(r0.threads), compressed: fmt(r0.compressed.latency_ms.p50, 3) + " ms", dense: fmt(r0.dense.latency_ms.p50, 3) + " ms", speedup: fmt(r0.speedup, 2) + "×" };
  for (const [k, v] of Object.entries(wantCells)) check(devCells[k] === v, `job C's device table: ${k} shows "${devCells[k]}", the profile says "${v}"`);
  const layerLat = await page.$$eval("#layers tbody tr[data-layer]", (trs) => trs.map((tr) => [tr.dataset.layer, tr.querySelector('[data-key="latency"]')?.textContent ?? null, tr.querySelector('[data-key="latency_share"]')?.textContent ?? null]));
  const profLayers = new Map(r0.compressed.layers.map((l) => [l.name, l]));
  let nTimed = 0;
  for (const [name, ms, share] of layerLat) {
    const pl = profLayers.get(name);
    const want = pl ? [fmt(pl.ms, 4) + " ms", (100 * pl.share).toFixed(1) + "%"] : ["—", "—"];
    check(ms === want[0] && share === want[1], `job C's layer ${name}: latency "${ms}" / "${share}", the profile says "${want[0]}" / "${want[1]}"`);
    if (pl) nTimed++;
  }
  check(nTimed >= 1, `no layer of job C's report is timed in its profile (report: ${layerLat.map((x) => x[0])}; profile: ${[...profLayers.keys()]})`);
  await page.locator("#devices-sec").scrollIntoViewIfNeeded();
  await shot("job-devices");
  // The Devices page, reached from the navigation.
  await page.click('nav a[data-nav="devices"]');
  const devTr = `#devices tbody tr[data-name="${DEV}"]`;
  await page.waitForSelector(devTr, { timeout: 10000 });
  let devDiff = "";
  const devicesDiff = async () => {
    const api = (await ok("GET", "/api/v1/devices", undefined, TOKEN, 200)).items;
    const shown = await page.$$eval("#devices tbody tr[data-device]", (trs) => trs.map((tr) => ({
      id: tr.dataset.device, name: tr.querySelector('[data-key="name"]').textContent, state: tr.querySelector('[data-key="state"] .badge').textContent,
      labels: [...tr.querySelectorAll("[data-label]")].map((l) => l.textContent),
      desc: [...tr.querySelectorAll("[data-field]")].map((f) => [f.dataset.field, f.dataset.value, f.querySelector("dd").textContent]),
      queue: tr.querySelector('[data-key="queue"]').textContent, runs: tr.querySelector('[data-key="tasks_run"]').textContent })));
    if (shown.length !== api.length) return `${shown.length} devices shown, the API lists ${api.length}`;
    for (const [i, d] of api.entries()) {
      const s = shown[i];
      if (s.id !== d.id || s.name !== d.name || s.state !== d.state) return `row ${i}: ${s.id} ${s.name} ${s.state}, the API: ${d.id} ${d.name} ${d.state}`;
      const wantLabels = Object.entries(d.labels).map(([k, v]) => `${k}=${v}`);
      if (JSON.stringify(s.labels) !== JSON.stringify(wantLabels)) return `${d.name}: labels ${s.labels}, the API ${wantLabels}`;
      if (s.desc.length !== Object.keys(d.description).length) return `${d.name}: ${s.desc.length} description fields shown, the API has ${Object.keys(d.description).length}`;
      for (const [k, v, text] of s.desc) {
        if (JSON.stringify(JSON.parse(v)) !== JSON.stringify(d.description[k])) return `${d.name}: description.${k} ${v}, the API ${JSON.stringify(d.description[k])}`;
        if (typeof d.description[k] === "string" && text !== d.description[k]) return `${d.name}: description.${k} shows "${text}"`;
      }
      if (s.queue !== String(d.queue) || s.runs !== String(d.tasks_run)) return `${d.name}: queue ${s.queue} runs ${s.runs}, the API ${d.queue} ${d.tasks_run}`;
    }
    return "";
  };
  await until("the Devices page to equal GET /api/v1/devices", async () => (devDiff = await devicesDiff()) === "", 15000, 250).catch(() => { throw new Error(devDiff); });
  const devApi = (await ok("GET", "/api/v1/devices", undefined, TOKEN, 200)).items.find((d) => d.name === DEV);
  check(devApi.tasks_run === 1 && JSON.stringify(devApi.labels) === JSON.stringify(DEV_LABELS) && typeof devApi.description.cpu === "string", "the device as the API lists it: " + JSON.stringify(devApi));
  await shot("devices");
  // The jobs table: job C's best device latency.
  await page.goto(URL0 + "/#/jobs");
  const latCell = `tr[data-job="${jobC.id}"] [data-col="latency"]`;
  const wantLat = r0.compressed.latency_ms.p50.toFixed(3) + " ms";
  await until("job C's best latency in the jobs table", async () => (await page.textContent(latCell)) === wantLat, 10000, 100).catch(async () => {
    throw new Error(`jobs table: job C's latency "${await page.textContent(latCell)}", the profile's p50 ${wantLat}`);
  });
  log(`ok: devices: ${DEV} listed as the API lists it (state ${devApi.state}, labels ${JSON.stringify(devApi.labels)}, ${Object.keys(devApi.description).length} description fields); job C profiled on it: p50 ${wantCells.compressed} compressed, ${wantCells.dense} dense, ${wantCells.speedup}; ${nTimed} of its layers timed as in the profile; best latency in the jobs table`);

  // ---- 9. phone width, keyboard ----
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [hash, name] of [["#/jobs", "phone-jobs"], [`#/jobs/${jobA.id}`, "phone-job"]]) {
    await page.goto(URL0 + "/" + hash);
    await page.waitForSelector(name === "phone-jobs" ? "#jobs tbody tr[data-job]" : "#layers");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `${hash} at 390 px overflows by ${overflow} px`);
    await shot(name);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(URL0 + "/#/jobs");
  await page.waitForSelector("#jobs tbody tr[data-job]");
  let reached = false;
  for (let i = 0; i < 30 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate((id) => document.activeElement && document.activeElement.getAttribute("href") === "#/jobs/" + id, jobA.id);
  }
  check(reached, "job A's link cannot be reached with Tab");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#layers");
  log("ok: phone width without overflow; a job opens from the keyboard");

  // A token revoked while signed in: the next request says so and asks to sign in again.
  const toks = await ok("GET", "/api/v1/tokens", undefined, ADMIN, 200);
  allowed = [{ re: /\/api\/v1\//, status: 401 }];
  await ok("DELETE", `/api/v1/tokens/${toks.items.find((t) => t.scope === "team").id}`, undefined, ADMIN, 200);
  await page.goto(URL0 + "/#/jobs");
  const again = await (await page.waitForSelector("#token-error:not(:empty)", { timeout: 10000 })).textContent();
  check(/revoked/.test(again), "a revoked token does not say so: " + again);
  allowed = [];
  log(`ok: a token revoked meanwhile sends back to sign-in ("${again}")`);

  check(consoleProblems.length === 0, "console errors or warnings:\n  " + consoleProblems.join("\n  "));
  log(`ok: no console errors or warnings; screenshots in ${OUT}`);
}

main().then(async () => {
  await cleanup();
  log("all passed");
}, (e) => fail(e.stack || String(e)));
