// The management API client: the session (sessionStorage), credentials on every call,
// NEW-API's envelope {success, message, data} unwrapped, and failures as ApiError.

const KEY = 'ailurus.console.session';

/** The session: {token, user} or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

export function saveSession(s) {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

/** Whether the session's token is an API token (`sk-…`), which has a common user's rights. */
export function isApiToken(s = session()) {
  return !!s && s.token.startsWith('sk-');
}

/** A failed call. `unavailable`: the server has no such endpoint. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.unavailable = (status === 404 || status === 501) && /^(no route for|no API route|unknown API operation)/.test(message || '');
  }
}

/** Credentials for the management API: `Bearer sk-…`, or NEW-API's access token with
 * `New-Api-User`. */
export function authHeaders(s = session()) {
  if (!s) return {};
  if (isApiToken(s)) return { Authorization: `Bearer ${s.token}` };
  return { Authorization: s.token, 'New-Api-User': String(s.user || '') };
}

/** One call; resolves to `data`, or to the whole envelope with `{envelope: true}`. */
export async function api(method, path, body, opts = {}) {
  const headers = { ...authHeaders(opts.session || session()) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `the bridge did not answer (${e.message})`);
  }
  let env = null;
  try {
    env = await res.json();
  } catch {
    throw new ApiError(res.status, `HTTP ${res.status} with a body that is not JSON`);
  }
  const message = env && (env.message || (env.error && env.error.message));
  if (!res.ok || !env || env.success === false) throw new ApiError(res.status, message || `HTTP ${res.status}`);
  return opts.envelope ? env : env.data;
}

export const get = (path, opts) => api('GET', path, undefined, opts);

/** `?k=v&…` of the defined, non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A page `{items, total, page, page_size}`, accepting a bare list too. */
export function pageOf(data) {
  if (Array.isArray(data)) return { items: data, total: data.length, page: 1, page_size: data.length };
  return { items: (data && data.items) || [], total: (data && data.total) || 0, page: (data && data.page) || 1, page_size: (data && data.page_size) || 10 };
}

/** Read a server-sent-event response to its end, calling `onData` with the text of each
 * `data:` line as its event completes (the Playground's chat stream, the Logs page's live
 * log). */
export async function eachData(res, onData) {
  const reader = res.body.getReader();
  const text = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += text.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      for (const line of frame.split('\n')) if (line.startsWith('data:')) onData(line.slice(5).trim());
    }
  }
}
