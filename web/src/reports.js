// Reports of finished jobs, fetched once and kept for the session (a
// report never changes once written; a retried job gets a new sha256).
import { get } from "./api.js";
import { showMessage } from "./util.js";

const cache = new Map(); // report sha256 -> report
const pending = new Map();

// The report of job if already loaded (fetch false), else a promise of it
// (null when the job has none).
export function reportOf(job, fetch = false) {
  const sha = job.outputs && job.outputs.report;
  if (!fetch) return sha ? cache.get(sha) || null : null;
  if (!sha) return Promise.resolve(null);
  if (cache.has(sha)) return Promise.resolve(cache.get(sha));
  if (!pending.has(sha)) {
    pending.set(sha, get(`/api/v1/jobs/${encodeURIComponent(job.id)}/report`).then(
      (r) => { cache.set(sha, r); pending.delete(sha); return r; },
      (e) => { pending.delete(sha); if (e.status !== 401) showMessage(`Could not load the report of ${job.name}: ${e.message}`); return null; }));
  }
  return pending.get(sha);
}

// The profile results of a job: one `profile` artifact per device that ran
// one of its profile tasks (docs/api.md, "Devices"; they are not in the
// job's outputs), each {"device": {"id","name"}, "target", "speedup",
// "results": [{"threads", "speedup", "compressed": {"latency_ms": {"p50",
// ...}, "layers": [{"name","format","ms","share"}]}, "dense": {...}}]}.
// Fetched once the job's profile tasks are all done, and kept.
const TASK_DONE = new Set(["succeeded", "failed", "dead", "cancelled"]);
const profiles = new Map(); // key -> [profile]
const profilesPending = new Map();

function profilesKey(job) {
  if (!job.params || !job.params.profile) return null;
  if (Array.isArray(job.tasks)) {
    const tasks = job.tasks.filter((t) => t.type === "profile");
    if (!tasks.length || tasks.some((t) => !TASK_DONE.has(t.state))) return null;
    return job.id + ":" + tasks.map((t) => `${t.id}/${t.state}/${t.attempts}`).join(",");
  }
  return ["succeeded", "failed", "cancelled"].includes(job.state) ? job.id + ":" + job.finished_at : null;
}

// As reportOf: the profiles if loaded (fetch false; null when not yet),
// else a promise of them ([] when the job profiled nothing).
export function profilesOf(job, fetch = false) {
  const key = profilesKey(job);
  if (!fetch) return key && profiles.has(key) ? profiles.get(key) : null;
  if (!key) return Promise.resolve([]);
  if (profiles.has(key)) return Promise.resolve(profiles.get(key));
  if (!profilesPending.has(key)) {
    const load = async () => {
      const list = await get(`/api/v1/jobs/${encodeURIComponent(job.id)}/artifacts`);
      const shas = list.items.filter((a) => a.kind === "profile").map((a) => a.sha256);
      const got = await Promise.all(shas.map((s) => get(`/api/v1/artifacts/${encodeURIComponent(s)}`)));
      return got.filter((p) => p && Array.isArray(p.results));
    };
    profilesPending.set(key, load().then(
      (p) => { profiles.set(key, p); profilesPending.delete(key); return p; },
      (e) => { profilesPending.delete(key); if (e.status !== 401) showMessage(`Could not load the device profiles of ${job.name}: ${e.message}`); return null; }));
  }
  return profilesPending.get(key);
}

// The compressed model's p50 latency (ms) on a profile's first thread
// count (the smallest asked for first), or null.
export function p50(result, side = "compressed") {
  const l = result && result[side] && result[side].latency_ms;
  return l && typeof l.p50 === "number" ? l.p50 : null;
}

// The best compressed p50 over every device and thread count, or null.
export function bestLatency(profs) {
  const v = [];
  for (const p of profs || []) for (const r of p.results || []) if (p50(r) !== null) v.push(p50(r));
  return v.length ? Math.min(...v) : null;
}
