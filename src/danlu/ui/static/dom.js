// Building the page without ever parsing data as HTML: every user string
// (run names, notes, tags, hyperparameter values, diff text) goes through
// textContent or a text node. There is no innerHTML in this app.

const SAFE_HREF = /^(#|\/(?!\/)|\.\/)/;  // in-app links and same-origin paths only

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'style') Object.assign(el.style, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'href' || key === 'src') el.setAttribute(key, SAFE_HREF.test(value) ? value : '#');
    else if (key === 'value' || key === 'checked' || key === 'disabled') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, ...children);
  return el;
}

export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// Links inside the app: hash routes built from ids, each part URL-encoded.
export const link = {
  runs: (q) => '#/' + (q ? '?q=' + encodeURIComponent(q) : ''),
  run: (id) => '#/run/' + encodeURIComponent(id),
  compare: (ids) => '#/compare/' + ids.map(encodeURIComponent).join(','),
  parallel: (ids, study) => '#/parallel/' + ids.map(encodeURIComponent).join(',')
    + (study ? '?study=' + encodeURIComponent(study) : ''),
  reports: () => '#/reports',
  report: (id) => '#/report/' + encodeURIComponent(id),
  file: (path) => '/api/files/' + String(path).split('/').map(encodeURIComponent).join('/'),
};

export function badge(status) {
  const s = String(status || '');
  return h('span', { class: 'badge st-' + s.replace(/[^a-z]/g, ''), text: s || '—' });
}

export function fmtNum(v) {
  if (v === null || v === undefined || v === '') return '—';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return Math.abs(v) >= 1e6 ? v.toExponential(3) : v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(4)));
}

export function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return fmtNum(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function fmtDuration(s) {
  if (s === null || s === undefined) return '—';
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + 's';
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  if (m < 60) return `${m}m ${String(sec).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

export function section(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', { text: title }), ...children);
}

export function errorBox(err) {
  return h('div', { class: 'error', role: 'alert', text: String(err && err.message ? err.message : err) });
}

// A key/value table of plain values (nested objects rendered by `render`).
export function kvTable(obj, render = fmtValue, cls = 'kv') {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('p', { class: 'muted', text: 'none' });
  return h('table', { class: cls }, h('tbody', null, entries.map(([k, v]) =>
    h('tr', null, h('th', { text: k }), h('td', null, render(v, k))))));
}
