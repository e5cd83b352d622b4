// A job's event history, followed live: what the curves are drawn from.
// Events already seen are kept in sessionStorage per job, so a reload
// redraws them at once and resumes the stream after the last id
// (Last-Event-ID) instead of replaying it; the stream is reopened after a
// drop until the job is terminal.
import { ApiError, get, streamEvents } from "./api.js";
import { TERMINAL } from "./util.js";

const CACHE_MAX = 20000; // events kept per job in sessionStorage

function cacheKey(jobId) {
  return "dnnpress.events." + jobId;
}

function loadCache(jobId) {
  try {
    const c = JSON.parse(sessionStorage.getItem(cacheKey(jobId)) || "null");
    if (c && Array.isArray(c.events) && Number.isInteger(c.lastId)) return c;
  } catch {
    /* a corrupt cache is dropped: the stream replays from the start */
  }
  return { lastId: 0, events: [] };
}

function saveCache(jobId, c) {
  try {
    sessionStorage.setItem(cacheKey(jobId), JSON.stringify(c));
  } catch {
    sessionStorage.removeItem(cacheKey(jobId)); // over quota: the next load replays the stream
  }
}

// Keeps only what the dashboard draws, compactly.
function keep(ev) {
  const d = ev.data || {};
  if (ev.type === "epoch") return { id: ev.id, t: "e", d: { task: d.task, epoch: d.epoch, epochs: d.epochs, loss: d.loss, train_accuracy: d.train_accuracy, test_accuracy: d.test_accuracy, lr: d.lr, sparsity: d.sparsity, stage: d.stage, iter: d.iter, attempt: d.attempt } };
  if (ev.type === "log" && d.kind === "admm_iteration") return { id: ev.id, t: "i", d: { stage: d.stage, iter: d.iter, layers: d.layers } };
  if (ev.type === "log" && d.kind === "stage") return { id: ev.id, t: "s", d };
  if (ev.type === "state") return { id: ev.id, t: "st", d };
  return { id: ev.id, t: "x" }; // counted (its id), not drawn
}

// Follows jobId; onChange(history) after each batch of new events, where
// history = {events: [...kept], lastId, resumedFrom, live}. stop() ends it.
export function followJob(jobId, onChange, onError) {
  const cache = loadCache(jobId);
  const hist = { events: cache.events, lastId: cache.lastId, resumedFrom: cache.lastId, live: true };
  const ctl = new AbortController();
  let stopped = false, dirty = false, saveTimer = null;
  const flush = () => {
    saveTimer = null;
    if (dirty) {
      dirty = false;
      onChange(hist);
    }
  };
  const schedule = () => {
    dirty = true;
    if (!saveTimer) saveTimer = setTimeout(() => { flush(); saveCache(jobId, { lastId: hist.lastId, events: hist.events.slice(-CACHE_MAX) }); }, 150);
  };
  if (hist.events.length) setTimeout(() => onChange(hist), 0);

  (async () => {
    let delay = 500;
    while (!stopped) {
      try {
        await streamEvents(jobId, hist.lastId, (ev) => {
          if (ev.id && ev.id <= hist.lastId) return; // already have it
          if (ev.id) hist.lastId = ev.id;
          hist.events.push(keep(ev));
          schedule();
        }, ctl.signal);
        delay = 500;
        const job = await get(`/api/v1/jobs/${encodeURIComponent(jobId)}`, { signal: ctl.signal });
        if (TERMINAL.has(job.state)) break;
      } catch (e) {
        if (stopped || e.name === "AbortError") return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 404)) { onError(e); return; }
        onError(e);
        delay = Math.min(delay * 2, 10000);
      }
      await new Promise((r) => setTimeout(r, delay));
    }
    hist.live = false;
    schedule();
  })();
  return {
    stop() {
      stopped = true;
      ctl.abort();
      if (saveTimer) clearTimeout(saveTimer);
      saveCache(jobId, { lastId: hist.lastId, events: hist.events.slice(-CACHE_MAX) });
    },
  };
}

// The curves' columns from the kept events. Epoch points are numbered
// 1..N across the job's tasks (train, compress, retrain).
export function curves(events) {
  const ep = events.filter((e) => e.t === "e").map((e) => e.d);
  const n = ep.map((_, i) => i + 1);
  const col = (k) => ep.map((d) => (typeof d[k] === "number" ? d[k] : null));
  const iters = events.filter((e) => e.t === "i").map((e) => e.d);
  // One map per iteration: a hundred layers over a thousand iterations stay linear.
  const seen = new Set();
  const idx = iters.map((x) => new Map((x.layers || []).map((l) => { seen.add(l.name); return [l.name, l]; })));
  const names = [...seen];
  const it = iters.map((_, i) => i + 1);
  const per = (k) => names.map((nm) => idx.map((m) => { const l = m.get(nm); return l && typeof l[k] === "number" ? l[k] : null; }));
  return {
    epochs: ep,
    loss: [n, col("loss")],
    accuracy: [n, col("train_accuracy"), col("test_accuracy")],
    lr: [n, col("lr")],
    sparsity: [n, col("sparsity")],
    layerNames: names,
    residual: [it, ...per("residual")],
    rho: [it, ...per("rho")],
  };
}
