// The API client: the team token lives in sessionStorage (never in a URL,
// never in localStorage), every call sends it as a bearer token, and every
// failure becomes an ApiError carrying the server's {code, message}.

const KEY = "dnnpress.token";
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const getToken = () => sessionStorage.getItem(KEY);
export const setToken = (t) => sessionStorage.setItem(KEY, t);
export function clearToken() {
  sessionStorage.removeItem(KEY);
}
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

async function errorOf(resp) {
  let code = "http_" + resp.status, message = `${resp.status} ${resp.statusText}`;
  try {
    const j = await resp.json();
    if (j && j.message) ({ code, message } = j);
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(resp.status, code, message);
}

async function send(method, path, { body, raw, headers = {}, signal, token } = {}) {
  const t = token || getToken();
  const h = { ...headers };
  if (t) h.Authorization = "Bearer " + t;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    h["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    h["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: payload, signal, cache: "no-store" });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `${method} ${path}: the server did not answer (${e.message})`);
  }
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && !token) onUnauthorized(err);
    throw err;
  }
  return resp;
}

export async function api(method, path, body, opts = {}) {
  const resp = await send(method, path, { ...opts, body });
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => api("GET", path, undefined, opts);

export async function upload(path, file) {
  const resp = await send("POST", path, { raw: file });
  return resp.json();
}

export async function download(path, filename) {
  const resp = await send("GET", path);
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Follows GET /api/v1/jobs/{id}/events from after `after` (Last-Event-ID),
// calling onEvent({id, type, data}) per frame; resolves when the stream
// ends. EventSource cannot send an Authorization header, hence fetch and
// this small SSE parser.
export async function streamEvents(jobId, after, onEvent, signal) {
  const headers = { Accept: "text/event-stream" };
  if (after > 0) headers["Last-Event-ID"] = String(after);
  const resp = await send("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal });
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { id: 0, type: "message", data: "" };
      if (!/^data:/m.test(frame)) continue; // a comment (keep-alive) or an empty frame: not an event
      for (const line of frame.split("\n")) {
        const c = line.indexOf(":");
        if (c <= 0) continue;
        const k = line.slice(0, c), v = line.slice(c + 1).replace(/^ /, "");
        if (k === "id") ev.id = Number(v);
        else if (k === "event") ev.type = v;
        else if (k === "data") ev.data += v;
      }
      try {
        ev.data = ev.data ? JSON.parse(ev.data) : null;
      } catch {
        continue;
      }
      if (ev.type === "error") throw new ApiError(401, ev.data.code, ev.data.message);
      onEvent(ev);
    }
  }
}
