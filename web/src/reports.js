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
