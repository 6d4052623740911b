// The JSON API under /api/ (documented at /api/openapi.json).

// How often pages showing a running run ask again, in ms (?poll=MS in the URL changes it).
export const POLL_MS = Math.max(100, Number(new URLSearchParams(location.search).get('poll')) || 2000);

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

export async function api(path, options = {}) {
  const init = { credentials: 'same-origin', headers: { Accept: 'application/json' }, ...options };
  if (options.json !== undefined) {
    init.body = JSON.stringify(options.json);
    init.headers['Content-Type'] = 'application/json';
    delete init.json;
  }
  let res;
  try {
    res = await fetch('/api' + path, init);
  } catch (e) {
    throw new ApiError('the dashboard server cannot be reached (was `danlu ui` stopped?)', 0);
  }
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new ApiError((data && data.error) || `${res.status} ${res.statusText}`, res.status);
  return data;
}

export function qs(params) {
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => sp.append(k, x)); else sp.append(k, v);
  }
  const s = sp.toString();
  return s ? '?' + s : '';
}

export function editRun(id, change) {
  return api('/runs/' + encodeURIComponent(id), { method: 'PATCH', json: change });
}
