// Generic views of plain data: any JSON value, a unified diff, a reproducibility
// record. Everything is text nodes; nothing is parsed as HTML.

import { h, fmtValue, kvTable } from './dom.js';

const LONG = 160;

// Any JSON value: scalars as text, long or multi-line text in <pre>, lists of
// records as a table, objects as nested key/value tables. `key` picks special
// views (a "diff" key shows a diff).
export function valueView(value, key = '') {
  if (typeof value === 'string' && /diff/i.test(key) && value.includes('\n')) return diffView(value);
  if (value === null || value === undefined) return h('span', { class: 'muted', text: '—' });
  if (typeof value === 'string') {
    if (value.includes('\n') || value.length > LONG) return h('pre', { class: 'text', text: value });
    return h('span', { text: value });
  }
  if (typeof value !== 'object') return h('span', { text: fmtValue(value) });
  if (Array.isArray(value)) {
    if (!value.length) return h('span', { class: 'muted', text: '[]' });
    if (value.every((v) => v === null || typeof v !== 'object')) {
      if (value.length <= 12) return h('span', { text: value.map(fmtValue).join(', ') });
      return h('details', null, h('summary', { text: `${value.length} items` }),
        h('ul', { class: 'plain' }, value.map((v) => h('li', { text: fmtValue(v) }))));
    }
    if (value.every((v) => v && typeof v === 'object' && !Array.isArray(v))) {
      const cols = [...new Set(value.flatMap((v) => Object.keys(v)))];
      return h('table', { class: 'grid' },
        h('thead', null, h('tr', null, cols.map((c) => h('th', { text: c })))),
        h('tbody', null, value.map((v) => h('tr', null, cols.map((c) => h('td', null, valueView(v[c], c)))))));
    }
    return h('ol', null, value.map((v) => h('li', null, valueView(v))));
  }
  const entries = Object.keys(value);
  const table = kvTable(value, valueView);
  if (entries.length > 20) {
    return h('details', null, h('summary', { text: `${entries.length} entries` }), table);
  }
  return table;
}

// A unified diff, line by line, with added/removed lines marked by class.
export function diffView(text, open = true) {
  const lines = String(text).split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  let added = 0, removed = 0;
  const pre = h('pre', { class: 'diff' });
  const MAX = 20000;
  lines.slice(0, MAX).forEach((line) => {
    let cls = '';
    if (line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff ') || line.startsWith('index ')) cls = 'file';
    else if (line.startsWith('+')) { cls = 'add'; added++; }
    else if (line.startsWith('-')) { cls = 'del'; removed++; }
    else if (line.startsWith('@@')) cls = 'hunk';
    pre.append(h('span', { class: cls, text: line + '\n' }));
  });
  if (lines.length > MAX) pre.append(h('span', { class: 'muted', text: `… ${lines.length - MAX} more lines` }));
  return h('details', { class: 'diff-box', open },
    h('summary', { text: `diff: ${lines.length} lines, +${added} −${removed}` }), pre);
}

// The reproducibility record (E1): known parts first (code, environment, data),
// then anything else the record holds, each shown with valueView.
const REPRO_ORDER = [
  ['code', /^(git|code|commit|branch|dirty|diff|recipe|snapshot|source|command|argv)/i],
  ['environment', /^(env|environment|python|torch|cuda|cudnn|platform|hardware|cpu|gpu|device|host|os|packages|pip|numpy)/i],
  ['data', /^(data|fingerprint|dataset)/i],
  ['seed', /^seed/i],
];

export function reproView(repro) {
  const keys = Object.keys(repro || {});
  if (!keys.length) return h('p', { class: 'muted', text: 'No reproducibility record for this run.' });
  const groups = new Map();
  for (const k of keys) {
    const hit = REPRO_ORDER.find(([, re]) => re.test(k));
    const g = hit ? hit[0] : 'other';
    if (!groups.has(g)) groups.set(g, {});
    groups.get(g)[k] = repro[k];
  }
  const order = [...REPRO_ORDER.map(([g]) => g), 'other'];
  return h('div', { class: 'repro' }, order.filter((g) => groups.has(g)).map((g) =>
    h('div', { class: 'repro-group' }, h('h3', { text: g }), kvTable(groups.get(g), valueView))));
}
